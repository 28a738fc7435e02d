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
