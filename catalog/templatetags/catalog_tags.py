from django import template
from django.template import TemplateDoesNotExist
from django.template.loader import get_template

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
