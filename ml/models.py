"""Model registry, CNN predictions, morphology posteriors and latent-space embeddings."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from pgvector.django import VectorField


class ModelVersion(models.Model):
    """One trained ensemble: where its weights are, their checksums, how it was made and how it scores."""

    class Task(models.TextChoices):
        INCLINATION = "inclination", "inclination"
        MORPHOLOGY = "morphology", "morphology (profile-parameter posteriors)"
        LATENT = "latent", "latent (image embeddings, outlier scores)"

    task = models.CharField(
        max_length=20,
        choices=Task.choices,
        default=Task.INCLINATION,
        db_index=True,
        verbose_name="task",
        help_text="What the model estimates; one version per task is active",
    )
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
    embedding_dim = models.PositiveSmallIntegerField(
        null=True, blank=True, verbose_name="embedding dimension", help_text="Length of the embedding vector of a latent model [1]"
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


class MorphologyPosterior(models.Model):
    """The morphology network's posterior of one image's profile parameters, per model version and
    model kind: summaries per physical parameter, the covariance of the transformed targets, and
    histograms of the samples for the galaxy page."""

    class Kind(models.TextChoices):
        SERSIC = "sersic", "Sérsic"
        BULGE_DISK = "bulge_disk", "bulge (Sérsic) + exponential disk"

    image = models.ForeignKey(
        "catalog.Image",
        on_delete=models.CASCADE,
        related_name="morphology_posteriors",
        verbose_name="image",
        help_text="The image the network saw",
    )
    galaxy = models.ForeignKey(
        "catalog.Galaxy",
        on_delete=models.CASCADE,
        related_name="morphology_posteriors",
        verbose_name="galaxy",
        help_text="The image's galaxy",
    )
    model_version = models.ForeignKey(
        ModelVersion,
        on_delete=models.CASCADE,
        related_name="morphology_posteriors",
        verbose_name="model version",
        help_text="Morphology network version",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices, verbose_name="model", help_text="Light-profile model of the network")
    names = models.JSONField(
        default=list,
        verbose_name="parameter names",
        help_text="Physical parameters in order: x, y [fitted pixel], flux [display units], re (re_disk, re_bulge) [fitted pixel], "
        "n, q (q_disk) [1], bt [1], theta [rad, counter-clockwise from +x]",
    )
    median = models.JSONField(default=dict, verbose_name="median", help_text="Posterior median per parameter (units as in names)")
    mode = models.JSONField(default=dict, verbose_name="mode", help_text="Posterior mode (histogram peak) per parameter")
    mean = models.JSONField(default=dict, verbose_name="mean", help_text="Posterior mean per parameter")
    std = models.JSONField(default=dict, verbose_name="std", help_text="Posterior standard deviation per parameter")
    intervals = models.JSONField(
        default=dict,
        verbose_name="intervals",
        help_text="Central 68.3 / 95.4 / 99.7 % intervals per parameter: [[lo, hi], [lo, hi], [lo, hi]]",
    )
    target_mean = models.JSONField(
        default=list, verbose_name="target mean", help_text="Network mean of the transformed targets (ml.morph.targets.TARGETS order)"
    )
    target_covariance = models.JSONField(
        default=list, verbose_name="target covariance", help_text="Network covariance Sigma = L D L^T of the transformed targets"
    )
    histograms = models.JSONField(
        default=list, blank=True, verbose_name="histograms", help_text="Per parameter: histogram of the posterior samples (edges, counts)"
    )
    passes = models.PositiveIntegerField(default=1, verbose_name="passes", help_text="Monte-Carlo dropout passes [1]")
    draws = models.PositiveIntegerField(default=0, verbose_name="draws", help_text="Posterior samples in all [1]")
    zoom = models.FloatField(null=True, blank=True, verbose_name="zoom", help_text="Crop head's zoom: fraction of the cutout side seen [1]")
    psf_fwhm = models.FloatField(null=True, blank=True, verbose_name="PSF FWHM", help_text="PSF FWHM given to the network [fitted pixel]")
    scale = models.FloatField(
        default=1.0, verbose_name="binning", help_text="Image pixels per fitted pixel (block averaging before the network) [pixel/pixel]"
    )
    re = models.FloatField(
        null=True, blank=True, verbose_name="re", help_text="Posterior median half-light radius (of the disk for bulge+disk) [image pixel]"
    )
    re_err = models.FloatField(null=True, blank=True, verbose_name="re error", help_text="Posterior standard deviation of re [image pixel]")
    n = models.FloatField(null=True, blank=True, verbose_name="n", help_text="Posterior median Sérsic index (Sérsic model) [1]")
    q = models.FloatField(
        null=True, blank=True, verbose_name="b/a", help_text="Posterior median axis ratio (of the disk for bulge+disk) [1]"
    )
    bt = models.FloatField(null=True, blank=True, verbose_name="B/T", help_text="Posterior median bulge-to-total flux ratio [1]")
    created = models.DateTimeField(auto_now=True, verbose_name="created", help_text="When the posterior was (re)computed [UTC]")

    class Meta:
        verbose_name = "morphology posterior"
        ordering = ["galaxy_id", "image_id", "kind"]
        constraints = [models.UniqueConstraint(fields=["image", "model_version", "kind"], name="ml_morph_once_per_image_version_kind")]
        indexes = [models.Index(fields=["galaxy", "model_version"], name="ml_morph_galaxy_version")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} posterior of image {self.image_id} ({self.model_version})"


class ImageEmbedding(models.Model):
    """The latent model's embedding of one image (L2-normalised, compared by cosine distance),
    with its reconstruction error, outlier score and place on the latent map. The vector column has
    no fixed length: each latent version gets its own partial HNSW index over
    ``embedding::vector(dim)`` (ml.vectors.ensure_hnsw_index)."""

    image = models.ForeignKey(
        "catalog.Image", on_delete=models.CASCADE, related_name="embeddings", verbose_name="image", help_text="The image embedded"
    )
    galaxy = models.ForeignKey(
        "catalog.Galaxy", on_delete=models.CASCADE, related_name="embeddings", verbose_name="galaxy", help_text="The image's galaxy"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="embeddings", verbose_name="model version", help_text="Latent model version"
    )
    embedding = VectorField(verbose_name="embedding", help_text="L2-normalised latent vector (length: the version's embedding_dim) [1]")
    recon_error = models.FloatField(
        verbose_name="reconstruction error", help_text="Mean squared reconstruction error of the preprocessed image [1]"
    )
    outlier_score = models.FloatField(
        verbose_name="outlier score",
        help_text="How unusual the image is (reconstruction error, latent density and artefacts; higher is more unusual) [1]",
    )
    artefact_score = models.FloatField(
        default=0.0,
        verbose_name="artefact part",
        help_text="The outlier score's part from the pixels (saturated blobs, cosmic rays, trails; 0 for ordinary images), kept by density refits [1]",
    )
    map_x = models.FloatField(verbose_name="map x", help_text="First coordinate of the 2-D projection of the latent map [1]")
    map_y = models.FloatField(verbose_name="map y", help_text="Second coordinate of the 2-D projection of the latent map [1]")
    created = models.DateTimeField(auto_now=True, verbose_name="created", help_text="When the embedding was (re)computed [UTC]")

    class Meta:
        verbose_name = "image embedding"
        ordering = ["galaxy_id", "image_id"]
        constraints = [models.UniqueConstraint(fields=["image", "model_version"], name="ml_embedding_once_per_version")]
        indexes = [
            models.Index(fields=["model_version", "-outlier_score"], name="ml_embedding_outlier"),
            models.Index(fields=["galaxy", "model_version"], name="ml_embedding_galaxy_version"),
        ]

    def __str__(self) -> str:
        return f"embedding of image {self.image_id} ({self.model_version})"


class LatentDensity(models.Model):
    """A refit of a latent version's density/outlier model on the catalog's embeddings (the nightly
    sweep); the newest one scores new images, the shipped fit is used before the first."""

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.CASCADE, related_name="densities", verbose_name="model version", help_text="Latent model version"
    )
    state = models.JSONField(verbose_name="state", help_text="The density model's parameters (LatentModel.density_state())")
    images = models.PositiveIntegerField(verbose_name="images", help_text="Embeddings the density was fitted on [1]")
    created = models.DateTimeField(auto_now_add=True, verbose_name="created", help_text="When the density was fitted [UTC]")

    class Meta:
        verbose_name = "latent density"
        verbose_name_plural = "latent densities"
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"density of {self.model_version} on {self.images} images ({self.created:%Y-%m-%d})"


class OutlierVerdict(models.Model):
    """A curator's verdict on an image shown as unusual; append-only, the newest one counts."""

    class Verdict(models.TextChoices):
        INTERESTING = "interesting", "interesting"
        ARTEFACT = "artefact", "artefact"
        NORMAL = "normal", "normal"

    image = models.ForeignKey(
        "catalog.Image", on_delete=models.CASCADE, related_name="outlier_verdicts", verbose_name="image", help_text="The image judged"
    )
    galaxy = models.ForeignKey(
        "catalog.Galaxy", on_delete=models.CASCADE, related_name="outlier_verdicts", verbose_name="galaxy", help_text="The image's galaxy"
    )
    verdict = models.CharField(max_length=12, choices=Verdict.choices, verbose_name="verdict", help_text="What the curator found")
    note = models.CharField(max_length=500, blank=True, default="", verbose_name="note", help_text="Free-text remark")
    outlier_score = models.FloatField(
        null=True, blank=True, verbose_name="outlier score", help_text="The image's outlier score when it was judged [1]"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="outlier_verdicts",
        verbose_name="curator",
        help_text="Who gave the verdict",
    )
    created = models.DateTimeField(auto_now_add=True, verbose_name="created", help_text="When the verdict was given [UTC]")

    class Meta:
        verbose_name = "outlier verdict"
        ordering = ["-created"]
        indexes = [models.Index(fields=["image", "-created"], name="ml_verdict_image_latest")]

    def __str__(self) -> str:
        return f"{self.verdict} on image {self.image_id}"


class PredictionSummary(models.Model):
    """A stored copy of each galaxy's CNN columns (ml.columns: the active model's inclination over
    the galaxy's images), so tables filter and sort on them through one indexed join. Kept by
    ml.columns.refresh_prediction_summary; never edited by hand."""

    galaxy = models.OneToOneField(
        "catalog.Galaxy",
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="prediction_summary",
        verbose_name="galaxy",
        help_text="The galaxy",
    )
    cnn_inc = models.FloatField(null=True, verbose_name="CNN inc", help_text="Median over images of the active model's inclination [deg]")
    cnn_inc_std = models.FloatField(null=True, verbose_name="CNN spread", help_text="Mean over images of the ensemble spread [deg]")
    cnn_reject = models.FloatField(null=True, verbose_name="CNN reject", help_text="Mean rejection likelihood over images [0-1]")
    axis_ratio_inc = models.FloatField(
        null=True, verbose_name="axis-ratio inc", help_text="Median over images of the axis-ratio inclination [deg]"
    )

    class Meta:
        indexes = [
            models.Index(fields=["cnn_inc"], name="ml_summary_cnn_inc"),
            models.Index(fields=["cnn_inc_std"], name="ml_summary_cnn_inc_std"),
            models.Index(fields=["cnn_reject"], name="ml_summary_cnn_reject"),
            models.Index(fields=["axis_ratio_inc"], name="ml_summary_axis_ratio_inc"),
        ]

    def __str__(self) -> str:
        return f"PGC {self.galaxy_id}: CNN {self.cnn_inc}"
