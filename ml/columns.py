"""The ml app's derived catalog columns: the active CNN model's inclination and the axis-ratio
baseline of each galaxy, over the galaxy's public images (as ml.services.galaxy_summary gives them), and
the active morphology networks' posterior medians (morph_*), and the active latent model's outlier
score (outlier_score). Only public images count: a catalog column is public, and a private
image's values reach members on the galaxy page and in the API only.

Tables read the stored copy in PredictionSummary; `refresh_prediction_summary` keeps it, called by
predict_and_store, refresh_axis_ratios, register_weights (a new active model) and the receivers
in ml.signals."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Aggregate, Avg, Exists, FloatField, Max, OuterRef, Q, Subquery

from catalog.columns import DerivedColumn, derived
from catalog.summaries import refresh_summary, register_summary, summary_columns
from ml.models import ImageEmbedding, MorphologyPosterior, Prediction, PredictionSummary

SUMMARY = "prediction_summary"


class Median(Aggregate):
    """PostgreSQL's percentile_cont(0.5): the median of a column."""

    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def _over_images(aggregate):
    def expression():
        rows = (
            Prediction.objects.filter(galaxy=OuterRef("pk"), model_version__active=True, image__is_public=True).order_by().values("galaxy")
        )
        return Subquery(rows.annotate(v=aggregate()).values("v")[:1], output_field=FloatField())

    return expression


def _morph(field: str, kind: str, aggregate=Median):
    """Over the galaxy's images: aggregate of a MorphologyPosterior field of the active morphology
    version's ``kind`` network (read through this subquery; no summary copy yet)."""

    def expression():
        rows = (
            MorphologyPosterior.objects.filter(galaxy=OuterRef("pk"), model_version__active=True, kind=kind, image__is_public=True)
            .order_by()
            .values("galaxy")
        )
        return Subquery(rows.annotate(v=aggregate(field)).values("v")[:1], output_field=FloatField())

    return expression


def _latent_outlier():
    """The highest outlier score of the galaxy's images under the active latent version."""
    rows = (
        ImageEmbedding.objects.filter(galaxy=OuterRef("pk"), model_version__active=True, image__is_public=True).order_by().values("galaxy")
    )
    return Subquery(rows.annotate(v=Max("outlier_score")).values("v")[:1], output_field=FloatField())


def derived_columns() -> list[DerivedColumn]:
    inc = "src.orbital.inclination"
    return [
        derived("cnn_inc", "float", "deg", inc, "CNN inclination of the active model: median over the galaxy's public images of the ensemble median", "cnn", _over_images(lambda: Median("value")), ".1f", SUMMARY),
        derived("cnn_inc_std", "float", "deg", f"stat.stdev;{inc}", "CNN spread: mean over the galaxy's public images of the standard deviation over members and test-time passes", "cnn", _over_images(lambda: Avg("uncertainty")), ".1f", SUMMARY),
        derived("cnn_reject", "float", "", "stat.probability", "CNN likelihood that the galaxy is face-on or unusable (mean over its public images) [0-1]", "cnn", _over_images(lambda: Avg("reject_likelihood")), ".2f", SUMMARY),
        derived("axis_ratio_inc", "float", "deg", inc, "Axis-ratio inclination, cos^2 i = (q^2 - q0^2)/(1 - q0^2) from the images' b/a (median over public images)", "cnn", _over_images(lambda: Median("axis_ratio_inc")), ".1f", SUMMARY),
    ] + [
        derived("morph_re", "float", "pix", "phys.angSize", "Morphology network (Sersic): posterior median half-light radius, median over the galaxy's public images, image pixels", "cnn", _morph("re", "sersic"), ".2f"),
        derived("morph_re_e", "float", "pix", "stat.error;phys.angSize", "Posterior standard deviation of morph_re (mean over public images)", "cnn", _morph("re_err", "sersic", Avg), ".2f"),
        derived("morph_n", "float", "", "src.morph.param", "Morphology network (Sersic): posterior median Sersic index, median over public images", "cnn", _morph("n", "sersic"), ".2f"),
        derived("morph_q", "float", "", "phys.size.axisRatio", "Morphology network (Sersic): posterior median axis ratio b/a, median over public images", "cnn", _morph("q", "sersic"), ".3f"),
        derived("morph_bt", "float", "", "src.morph.param", "Morphology network (bulge+disk): posterior median bulge-to-total ratio, median over public images", "cnn", _morph("bt", "bulge_disk"), ".3f"),
    ] + [
        derived("outlier_score", "float", "", "stat.value", "Latent model's outlier score (reconstruction error and latent density; higher is more unusual): highest over the galaxy's public images", "cnn", _latent_outlier, ".2f"),
    ]  # fmt: skip


def refresh_prediction_summary(pgcs: Iterable[int] | None = None) -> int:
    """Recompute the stored CNN columns of these galaxies (all when None)."""
    present = Q(Exists(Prediction.objects.filter(galaxy=OuterRef("pk"), model_version__active=True, image__is_public=True)))
    return refresh_summary(PredictionSummary, summary_columns(derived_columns(), SUMMARY), pgcs, present)


register_summary(SUMMARY, refresh_prediction_summary)
