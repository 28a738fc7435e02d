from html import escape

from django import template
from django.template import TemplateDoesNotExist
from django.template.defaultfilters import floatformat
from django.template.loader import get_template
from django.urls import reverse
from django.utils.safestring import mark_safe

register = template.Library()


@register.simple_tag(takes_context=True)
def galaxy_panel(context, template_name: str) -> str:
    """Render a galaxy-page panel of another app; panels of apps not installed render nothing."""
    try:
        tpl = get_template(template_name)
    except TemplateDoesNotExist:
        return ""
    return tpl.render(context.flatten(), context.get("request"))


@register.filter
def colfmt(value, col) -> str:
    """A column value formatted as the registry says (blank for missing)."""
    if value is None or value == "":
        return ""
    if col.kind == "flag":
        return col.letter if value else ""
    if col.kind == "bool":
        return "yes" if value else "no"
    if col.fmt and isinstance(value, (int, float)):
        return format(value, col.fmt)
    return str(value)


@register.simple_tag
def galaxy_rows(rows) -> str:
    """The <tr> rows of the browse table, rows of (column, value) pairs: one Python pass, which
    the page's template loop over every cell (most of its rendering time) was not."""
    mark = 2**31 - 1  # a PGC number standing for each row's in one reverse()
    detail = reverse("catalog:galaxy-detail", kwargs={"pgc": mark}).replace(str(mark), "{}")
    out = []
    for row in rows:
        cells = []
        for col, value in row:
            if col.name == "pgc":
                cells.append(f'<td><a href="{escape(detail.format(value))}">{escape(str(value))}</a></td>')
            elif col.name == "distance":
                cells.append(f"<td>{escape(floatformat(value, 5))}</td>")
            else:
                cells.append(f"<td>{escape(colfmt(value, col))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return mark_safe("\n".join(out))  # every value escaped above


# Catalogues in the order astronomers usually name a galaxy by; common names come after them.
_NAME_RANK = ("M", "NGC", "IC", "UGC", "ESO", "MCG")


@register.filter
def principal_names(names) -> list:
    """Names (GalaxyName rows) best first: Messier, NGC, IC, UGC, ESO, MCG, then common names
    (no digits), then the rest (2MASX, IRAS, SDSS)."""

    def rank(n) -> tuple[int, str]:
        prefix = n.name.split(" ", 1)[0].upper()
        if prefix in _NAME_RANK:
            return _NAME_RANK.index(prefix), n.name
        return (len(_NAME_RANK), n.name) if not any(ch.isdigit() for ch in n.name) else (len(_NAME_RANK) + 1, n.name)

    return sorted(names, key=rank)
