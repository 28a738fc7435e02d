"""The ml app's derived catalog columns: the active CNN model's inclination and the axis-ratio
baseline of each galaxy, over the galaxy's images (as ml.services.galaxy_summary gives them)."""

from __future__ import annotations

from django.db.models import Aggregate, Avg, FloatField, OuterRef, Subquery

from catalog.columns import DerivedColumn, derived
from ml.models import Prediction


class Median(Aggregate):
    """PostgreSQL's percentile_cont(0.5): the median of a column."""

    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def _over_images(aggregate):
    def expression():
        rows = Prediction.objects.filter(galaxy=OuterRef("pk"), model_version__active=True).order_by().values("galaxy")
        return Subquery(rows.annotate(v=aggregate()).values("v")[:1], output_field=FloatField())

    return expression


def derived_columns() -> list[DerivedColumn]:
    inc = "src.orbital.inclination"
    return [
        derived("cnn_inc", "float", "deg", inc, "CNN inclination of the active model: median over the galaxy's images of the ensemble median", "cnn", _over_images(lambda: Median("value")), ".1f"),
        derived("cnn_inc_std", "float", "deg", f"stat.stdev;{inc}", "CNN spread: mean over the galaxy's images of the standard deviation over members and test-time passes", "cnn", _over_images(lambda: Avg("uncertainty")), ".1f"),
        derived("cnn_reject", "float", "", "stat.probability", "CNN likelihood that the galaxy is face-on or unusable (mean over its images) [0-1]", "cnn", _over_images(lambda: Avg("reject_likelihood")), ".2f"),
        derived("axis_ratio_inc", "float", "deg", inc, "Axis-ratio inclination, cos^2 i = (q^2 - q0^2)/(1 - q0^2) from the images' b/a (median over images)", "cnn", _over_images(lambda: Median("axis_ratio_inc")), ".1f"),
    ]  # fmt: skip
