"""Model registry and CNN predictions."""

from __future__ import annotations

from django.db import models


class ModelVersion(models.Model):
    """One trained ensemble: where its weights are, their checksums, how it was made and how it scores."""

    name = models.CharField(max_length=80, verbose_name="name", help_text="Model family, e.g. inclinet-synth")
    version = models.CharField(max_length=40, verbose_name="version", help_text="Version label, e.g. 1 or the training date")
    architecture = models.CharField(max_length=300, verbose_name="architecture", help_text="Network architecture in words")
    training_data = models.TextField(blank=True, default="", verbose_name="training data", help_text="What the ensemble was trained on")
    metrics = models.JSONField(
        default=dict, blank=True, verbose_name="metrics", help_text="Validation/test metrics (RMS, MAE, bias in deg)"
    )
    weights_path = models.CharField(
        max_length=500,
        verbose_name="weights path",
        help_text="Directory with ensemble.json and member files (relative to the project or absolute)",
    )
    sha256 = models.CharField(
        max_length=64, verbose_name="sha256", help_text="SHA-256 of ensemble.json, the manifest that lists every member file's SHA-256"
    )
    files = models.JSONField(
        default=dict, blank=True, verbose_name="files", help_text="Member file name -> SHA-256; loading refuses a mismatch"
    )
    card = models.JSONField(
        default=dict, blank=True, verbose_name="model card", help_text="Model card: data, seeds, exact command, metrics"
    )
    active = models.BooleanField(default=False, db_index=True, verbose_name="active", help_text="Used for new predictions")
    created = models.DateTimeField(auto_now_add=True, verbose_name="created", help_text="When the version was registered [UTC]")

    class Meta:
        ordering = ["-created"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="ml_model_version_unique")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Prediction(models.Model):
    """A CNN inclination of one image by one model version, with the axis-ratio baseline beside it."""

    image = models.ForeignKey(
        "catalog.Image", on_delete=models.CASCADE, related_name="predictions", verbose_name="image", help_text="The image predicted"
    )
    galaxy = models.ForeignKey(
        "catalog.Galaxy", on_delete=models.CASCADE, related_name="predictions", verbose_name="galaxy", help_text="The image's galaxy"
    )
    model_version = models.ForeignKey(
        ModelVersion,
        on_delete=models.CASCADE,
        related_name="predictions",
        verbose_name="model version",
        help_text="Ensemble that predicted",
    )
    value = models.FloatField(verbose_name="inc", help_text="Ensemble median inclination over members and test-time passes [deg]")
    uncertainty = models.FloatField(verbose_name="inc_e", help_text="Standard deviation over members and test-time passes [deg]")
    reject_likelihood = models.FloatField(
        verbose_name="rejection likelihood", help_text="Mean probability that the image is face-on or unusable [0-1]"
    )
    axis_ratio = models.FloatField(
        null=True, blank=True, verbose_name="b/a", help_text="Apparent axis ratio from image moments (dimensionless)"
    )
    axis_ratio_inc = models.FloatField(
        null=True, blank=True, verbose_name="axis-ratio inc", help_text="Baseline inclination from b/a with q0 = GALCAT_Q0 [deg]"
    )
    extra = models.JSONField(
        default=dict, blank=True, verbose_name="extra", help_text="Per-member values [deg], mean [deg], q0 used, rejection likelihood"
    )
    created = models.DateTimeField(auto_now=True, verbose_name="created", help_text="When the prediction was (re)computed [UTC]")

    class Meta:
        ordering = ["galaxy_id", "image_id"]
        constraints = [models.UniqueConstraint(fields=["image", "model_version"], name="ml_prediction_once_per_version")]
        indexes = [models.Index(fields=["galaxy", "model_version"])]

    def __str__(self) -> str:
        return f"PGC {self.galaxy_id} image {self.image_id}: {self.value:.1f} deg ({self.model_version})"
