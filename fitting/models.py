"""Profile fits of catalog images (one row per image, model kind and engine version)."""

from __future__ import annotations

import math

from django.db import models

from catalog.models import Image
from fitting.conf import conf


def axis_ratio_inclination(q: float | None, q0: float | None = None) -> float | None:
    """Inclination [deg] from the axis ratio q = b/a of a thick disk of intrinsic edge-on axis ratio q0:
    cos^2 i = (q^2 - q0^2) / (1 - q0^2) (Hubble 1926; q0 from GALCAT_Q0, default 0.3);
    90 deg when q <= q0."""
    if q is None or not math.isfinite(q):
        return None
    q0 = float(conf.Q0) if q0 is None else q0
    q = min(max(q, 0.0), 1.0)
    if q <= q0:
        return 90.0
    return math.degrees(math.acos(math.sqrt((q * q - q0 * q0) / (1.0 - q0 * q0))))


class FitResult(models.Model):
    """One profile fit of one image; re-running the same model with the same engine version updates it."""

    class Kind(models.TextChoices):
        SERSIC = "sersic", "Sérsic"
        BULGE_DISK = "bulge_disk", "bulge (Sérsic) + exponential disk"

    image = models.ForeignKey(
        Image, on_delete=models.CASCADE, related_name="fits", verbose_name="image", help_text="The image that was fitted"
    )
    model_kind = models.CharField(
        max_length=20, choices=Kind.choices, verbose_name="model", help_text="Light-profile model that was fitted"
    )
    engine_version = models.CharField(max_length=20, verbose_name="engine version", help_text="Version of fitting.engine that made the fit")
    params = models.JSONField(
        default=dict,
        verbose_name="parameters",
        help_text="Fitted parameters by name: x0, y0 [fitted pixel], sky, flux [display units], re [fitted pixel, major axis], "
        "n, q (b/a), theta [rad, counter-clockwise from +x]; bulge./disk. prefixes for bulge+disk",
    )
    errors = models.JSONField(default=dict, verbose_name="errors", help_text="1-sigma errors of the parameters, same names and units")
    covariance = models.JSONField(
        default=list, blank=True, verbose_name="covariance", help_text="Covariance matrix of the parameters, in the order of params"
    )
    scale = models.FloatField(
        default=1.0, verbose_name="binning", help_text="Image pixels per fitted pixel (block averaging before the fit) [pixel/pixel]"
    )
    re = models.FloatField(
        null=True, blank=True, verbose_name="re", help_text="Major-axis half-light radius (of the disk for bulge+disk) [image pixel]"
    )
    re_err = models.FloatField(null=True, blank=True, verbose_name="re error", help_text="1-sigma error of re [image pixel]")
    n = models.FloatField(null=True, blank=True, verbose_name="n", help_text="Sérsic index (of the bulge for bulge+disk) [1]")
    n_err = models.FloatField(null=True, blank=True, verbose_name="n error", help_text="1-sigma error of n [1]")
    q = models.FloatField(null=True, blank=True, db_index=True, verbose_name="b/a", help_text="Axis ratio (of the disk for bulge+disk) [1]")
    q_err = models.FloatField(null=True, blank=True, verbose_name="b/a error", help_text="1-sigma error of b/a [1]")
    theta = models.FloatField(
        null=True,
        blank=True,
        verbose_name="major-axis angle",
        help_text="Angle of the major axis in the image, counter-clockwise from +x (x along columns, y along rows) [deg]",
    )
    chi2 = models.FloatField(null=True, blank=True, verbose_name="chi2", help_text="Chi-square at the optimum [1]")
    dof = models.IntegerField(null=True, blank=True, verbose_name="dof", help_text="Degrees of freedom: fitted pixels minus parameters [1]")
    iterations = models.PositiveIntegerField(default=0, verbose_name="iterations", help_text="Levenberg-Marquardt steps [1]")
    converged = models.BooleanField(default=False, db_index=True, verbose_name="converged", help_text="Whether the fit converged")
    reason = models.CharField(
        max_length=500,
        blank=True,
        default="",
        verbose_name="reason",
        help_text="Why a fit failed or what was masked; empty when all is well",
    )
    psf = models.CharField(
        max_length=100, blank=True, default="none", verbose_name="PSF", help_text="PSF model used in the fit ('none': seeing not modelled)"
    )
    device = models.CharField(max_length=40, blank=True, default="", verbose_name="device", help_text="Device the fit ran on (cpu, cuda)")
    seconds = models.FloatField(default=0.0, verbose_name="seconds", help_text="Wall time per image of the batch it was fitted in [s]")
    created = models.DateTimeField(auto_now_add=True, verbose_name="created", help_text="When the fit was first stored [UTC]")
    updated = models.DateTimeField(auto_now=True, verbose_name="updated", help_text="When the fit was last stored [UTC]")

    class Meta:
        verbose_name = "profile fit"
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(fields=["image", "model_kind", "engine_version"], name="fitting_fit_unique_image_model_engine")
        ]
        indexes = [models.Index(fields=["model_kind", "engine_version"], name="fitting_fit_kind_engine")]

    def __str__(self) -> str:
        return f"{self.get_model_kind_display()} fit of image {self.image_id} (engine {self.engine_version})"

    @property
    def chi2_dof(self) -> float | None:
        if self.chi2 is None or not self.dof:
            return None
        return self.chi2 / self.dof

    @property
    def inclination(self) -> float | None:
        """Axis-ratio inclination [deg] from the fitted b/a (GALCAT_Q0)."""
        return axis_ratio_inclination(self.q)


class FitSummary(models.Model):
    """A stored copy of each galaxy's fit columns (fitting.columns: its latest fit, converged
    first), so tables filter and sort on them through one indexed join. Kept by
    fitting.columns.refresh_fit_summary; never edited by hand."""

    galaxy = models.OneToOneField(
        "catalog.Galaxy",
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="fit_summary",
        verbose_name="galaxy",
        help_text="The galaxy",
    )
    fit_model = models.CharField(max_length=20, null=True, verbose_name="fit model", help_text="Model of the latest fit")
    fit_re = models.FloatField(null=True, verbose_name="fit Re", help_text="Fitted half-light radius [pix]")
    fit_re_e = models.FloatField(null=True, verbose_name="fit Re error", help_text="1-sigma error of fit_re [pix]")
    fit_n = models.FloatField(null=True, verbose_name="fit n", help_text="Fitted Sersic index")
    fit_n_e = models.FloatField(null=True, verbose_name="fit n error", help_text="1-sigma error of fit_n")
    fit_q = models.FloatField(null=True, verbose_name="fit q", help_text="Fitted axis ratio b/a")
    fit_q_e = models.FloatField(null=True, verbose_name="fit q error", help_text="1-sigma error of fit_q")
    fit_theta = models.FloatField(null=True, verbose_name="fit theta", help_text="Fitted major-axis angle in the image [deg]")
    fit_chi2_dof = models.FloatField(null=True, verbose_name="fit chi2/dof", help_text="Reduced chi-square of the latest fit")

    class Meta:
        indexes = [
            models.Index(fields=[name], name=f"fitting_summary_{name}")
            for name in ("fit_model", "fit_re", "fit_re_e", "fit_n", "fit_n_e", "fit_q", "fit_q_e", "fit_theta", "fit_chi2_dof")
        ]

    def __str__(self) -> str:
        return f"PGC {self.galaxy_id}: {self.fit_model} fit"
