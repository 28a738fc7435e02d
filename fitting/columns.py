"""The fitting app's derived catalog columns: the parameters of each galaxy's latest profile fit
of a public image (converged fits first), with their 1-sigma errors.

Tables read the stored copy in FitSummary; `refresh_fit_summary` keeps it, called by the fitting
service after each batch and by the receivers in fitting.signals."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Exists, ExpressionWrapper, F, FloatField, OuterRef, Q, Subquery

from catalog.columns import DerivedColumn, derived
from catalog.summaries import refresh_summary, register_summary, summary_columns
from fitting.models import FitResult, FitSummary

SUMMARY = "fit_summary"


def _latest(field):
    def expression():
        fits = FitResult.objects.filter(image__galaxy=OuterRef("pk"), image__is_public=True).order_by("-converged", "-updated", "-id")
        if field == "chi2_dof":
            fits = fits.filter(dof__gt=0).annotate(v=ExpressionWrapper(F("chi2") / F("dof"), output_field=FloatField()))
            return Subquery(fits.values("v")[:1])
        return Subquery(fits.values(field)[:1])

    return expression


def derived_columns() -> list[DerivedColumn]:
    return [
        derived("fit_model", "str", "", "meta.code", "Model of the latest profile fit (sersic, bulge_disk)", "fit", _latest("model_kind"), summary=SUMMARY),
        derived("fit_re", "float", "pix", "phys.angSize", "Fitted major-axis half-light radius (disk for bulge+disk), image pixels", "fit", _latest("re"), ".2f", summary=SUMMARY),
        derived("fit_re_e", "float", "pix", "stat.error;phys.angSize", "1-sigma error of fit_re", "fit", _latest("re_err"), ".2f", summary=SUMMARY),
        derived("fit_n", "float", "", "src.morph.param", "Fitted Sersic index (bulge for bulge+disk)", "fit", _latest("n"), ".2f", summary=SUMMARY),
        derived("fit_n_e", "float", "", "stat.error;src.morph.param", "1-sigma error of fit_n", "fit", _latest("n_err"), ".2f", summary=SUMMARY),
        derived("fit_q", "float", "", "phys.size.axisRatio", "Fitted axis ratio b/a (disk for bulge+disk)", "fit", _latest("q"), ".3f", summary=SUMMARY),
        derived("fit_q_e", "float", "", "stat.error;phys.size.axisRatio", "1-sigma error of fit_q", "fit", _latest("q_err"), ".3f", summary=SUMMARY),
        derived("fit_theta", "float", "deg", "pos.posAng", "Fitted major-axis angle in the image, counter-clockwise from +x", "fit", _latest("theta"), ".1f", summary=SUMMARY),
        derived("fit_chi2_dof", "float", "", "stat.fit.chi2", "Reduced chi-square of the latest fit", "fit", _latest("chi2_dof"), ".2f", summary=SUMMARY),
    ]  # fmt: skip


def refresh_fit_summary(pgcs: Iterable[int] | None = None) -> int:
    """Recompute the stored fit columns of these galaxies (all when None)."""
    present = Q(Exists(FitResult.objects.filter(image__galaxy=OuterRef("pk"), image__is_public=True)))
    return refresh_summary(FitSummary, summary_columns(derived_columns(), SUMMARY), pgcs, present)


register_summary(SUMMARY, refresh_fit_summary)
