from django import template

from ml.services import galaxy_summary
from zoo.services import current_consensus

register = template.Library()


@register.simple_tag
def ml_panel_data(galaxy) -> dict:
    """CNN members, summary, rejection likelihood and axis-ratio baseline of a galaxy (stored
    predictions of the active version), with the volunteers' consensus when there is one."""
    s = galaxy_summary(galaxy) or {}
    try:
        c = current_consensus(galaxy)
    except Exception:  # noqa: BLE001 - the panel never breaks the galaxy page
        c = None
    return {"cnn": s, "consensus": c}
