"""The relational core of the catalog: galaxies, names, images and releases."""

from __future__ import annotations

from django.db import models

from catalog.columns import COLUMNS, Column
from catalog.names import display_name, normalise_name
from catalog.sky import check_position, derived_coordinates, healpix_index
from core.fields import acting_user

# ---------------------------------------------------------------------------------------------
# Galaxy
# ---------------------------------------------------------------------------------------------
_EXPLICIT = {"pgc", "ra", "dec"}


def _field_for(col: Column) -> models.Field:
    common = {"null": True, "blank": True, "verbose_name": col.name, "help_text": col.help_text}
    if col.kind == "float":
        return models.FloatField(**common)
    if col.kind == "int":
        return models.IntegerField(**common)
    if col.kind == "bool" or col.kind == "flag":
        return models.BooleanField(**common)
    if col.kind == "str":
        return models.CharField(max_length=200, default="", **{**common, "null": False})
    raise ValueError(f"column {col.name}: unknown kind {col.kind}")


# Every registry column (but pgc/ra/dec, declared below with their indexes) as a nullable field.
GalaxyColumns = type(
    "GalaxyColumns",
    (models.Model,),
    {
        "__module__": __name__,
        "Meta": type("Meta", (), {"abstract": True}),
        **{c.name: _field_for(c) for c in COLUMNS if c.name not in _EXPLICIT},
    },
)


class GalaxyQuerySet(models.QuerySet):
    def located(self) -> GalaxyQuerySet:
        """Galaxies with a position (healpix is set exactly when ra/dec are, and is indexed)."""
        return self.filter(healpix__isnull=False)

    def awaiting_position(self) -> GalaxyQuerySet:
        """Galaxies known only by their pgc (named by votes or images before a table held them)."""
        return self.filter(healpix__isnull=True)

    def update(self, **kwargs):
        if ("ra" in kwargs or "dec" in kwargs) and "healpix" not in kwargs:
            raise ValueError(
                "moving galaxies needs healpix too: set ra/dec and save() each Galaxy (Galaxy.sync_sky_fields), "
                "or fill the rows with catalog.sky.fill_sky_fields() and bulk_create them"
            )
        return super().update(**kwargs)


class Galaxy(GalaxyColumns):
    """A galaxy, identified by its PGC number; every EDD CF4 column as a typed, nullable field."""

    pgc = models.PositiveIntegerField(primary_key=True, verbose_name="pgc", help_text="Principal Galaxies Catalogue number (HyperLEDA)")
    ra = models.FloatField(null=True, blank=True, verbose_name="ra", help_text="Right ascension (ICRS, J2000) [deg]")
    dec = models.FloatField(null=True, blank=True, verbose_name="dec", help_text="Declination (ICRS, J2000) [deg]")
    healpix = models.BigIntegerField(
        null=True,
        blank=True,
        db_index=True,
        editable=False,
        verbose_name="healpix",
        help_text="HEALPix nested index at depth 29 of (ra, dec); kept in sync by every write path",
    )
    created = models.DateTimeField(auto_now_add=True, verbose_name="created", help_text="When the row was created [UTC]")
    updated = models.DateTimeField(auto_now=True, verbose_name="updated", help_text="When the row last changed [UTC]")

    objects = GalaxyQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "galaxies"
        ordering = ["pgc"]
        constraints = [
            models.CheckConstraint(
                name="galaxy_position_complete",
                condition=(
                    models.Q(ra__isnull=True, dec__isnull=True, healpix__isnull=True)
                    | models.Q(ra__isnull=False, dec__isnull=False, healpix__isnull=False)
                ),
                violation_error_message="ra, dec and healpix are set together or not at all",
            ),
            models.CheckConstraint(
                name="galaxy_position_range",
                condition=models.Q(ra__isnull=True) | models.Q(ra__gte=0, ra__lt=360, dec__gte=-90, dec__lte=90),
                violation_error_message="ra must be in [0, 360) and dec in [-90, 90]",
            ),
        ]

    def __str__(self) -> str:
        return f"PGC {self.pgc}"

    @property
    def has_position(self) -> bool:
        return self.ra is not None and self.dec is not None

    def sync_sky_fields(self) -> None:
        """Recompute healpix (and fill missing galactic/supergalactic coordinates) from ra/dec."""
        if self.ra is None or self.dec is None:
            self.ra = self.dec = self.healpix = None
            return
        self.ra, self.dec = check_position(self.ra, self.dec)
        self.healpix = int(healpix_index(self.ra, self.dec)[0])
        if any(getattr(self, k) is None for k in ("gl", "gb", "sgl", "sgb")):
            derived = derived_coordinates(self.ra, self.dec)
            for key, values in derived.items():
                if getattr(self, key) is None:
                    setattr(self, key, float(values[0]))

    def save(self, *args, **kwargs):
        self.sync_sky_fields()
        super().save(*args, **kwargs)


class GalaxyName(models.Model):
    """An alias of a galaxy (NGC 4565, UGC 7772, ...), unique after normalisation."""

    galaxy = models.ForeignKey(
        Galaxy, on_delete=models.CASCADE, related_name="names", verbose_name="galaxy", help_text="The galaxy this name designates"
    )
    name = models.CharField(max_length=100, verbose_name="name", help_text="The name as usually written, e.g. 'NGC 4565'")
    normalised = models.CharField(
        max_length=100,
        unique=True,
        editable=False,
        verbose_name="normalised name",
        help_text="Lookup key: upper case, no blanks, no leading zeros",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        self.name = display_name(self.name)
        self.normalised = normalise_name(self.name)
        super().save(*args, **kwargs)


class SkyCell(models.Model):
    """How many located galaxies lie in one HEALPix cell of depth catalog.sky.SKY_CELL_DEPTH,
    so that a large cone is counted from its whole cells (catalog.cone.cone_count) instead of
    from every index entry inside it. Kept in the same transaction as every write of the galaxy
    table, by statement triggers over its transition tables (migration 0006), or by the table
    import, which counts its own write set-wise with the triggers off (catalog.importers.tables)."""

    cell = models.BigIntegerField(primary_key=True, help_text="Nested HEALPix index at depth SKY_CELL_DEPTH (healpix >> 46)")
    galaxies = models.BigIntegerField(default=0, help_text="Located galaxies in the cell")

    # the galaxy table's statement triggers that keep the counts (migration 0006), which the
    # table import turns off while it writes
    TRIGGERS = ("catalog_skycell_insert", "catalog_skycell_update", "catalog_skycell_delete")

    class Meta:
        verbose_name = "sky cell count"

    def __str__(self) -> str:
        return f"cell {self.cell}: {self.galaxies}"


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
class Image(models.Model):
    """A cutout of a galaxy in one band (or a colour composite), stored once per content."""

    class Band(models.TextChoices):
        U = "u", "SDSS u"
        G = "g", "SDSS g"
        R = "r", "SDSS r"
        I = "i", "SDSS i"  # noqa: E741
        Z = "z", "SDSS z"
        GRI = "gri", "gri colour composite"
        W1 = "w1", "WISE W1"
        W2 = "w2", "WISE W2"
        OTHER = "other", "other"

    class Orientation(models.TextChoices):
        MAJOR_HORIZONTAL = "major_horizontal", "rotated: major axis horizontal"
        NORTH_UP = "north_up", "north up, east left"
        UNKNOWN = "unknown", "unknown"

    galaxy = models.ForeignKey(Galaxy, on_delete=models.CASCADE, related_name="images", verbose_name="galaxy", help_text="The galaxy shown")
    survey = models.CharField(max_length=40, default="SDSS", verbose_name="survey", help_text="Survey the pixels come from")
    band = models.CharField(
        max_length=8, choices=Band.choices, verbose_name="band", help_text="Photometric band, or gri for a colour composite"
    )
    file = models.FileField(upload_to="images/", max_length=255, verbose_name="file", help_text="Stored image file (PNG, JPEG or FITS)")
    format = models.CharField(max_length=8, verbose_name="format", help_text="File format: png, jpeg, gif or fits")
    width = models.PositiveIntegerField(verbose_name="width", help_text="Width [pixel]")
    height = models.PositiveIntegerField(verbose_name="height", help_text="Height [pixel]")
    channels = models.PositiveSmallIntegerField(default=1, verbose_name="channels", help_text="1 for grey, 3 for colour")
    pixel_scale = models.FloatField(null=True, blank=True, verbose_name="pixel scale", help_text="Angular size of a pixel [arcsec/pixel]")
    orientation = models.CharField(
        max_length=20,
        choices=Orientation.choices,
        default=Orientation.UNKNOWN,
        verbose_name="orientation",
        help_text="How the image is oriented on the sky",
    )
    inverted = models.BooleanField(default=False, verbose_name="inverted", help_text="Galaxy dark on a light background")
    wcs = models.JSONField(null=True, blank=True, verbose_name="WCS", help_text="FITS WCS header keywords, when known")
    sha256 = models.CharField(
        max_length=64,
        db_index=True,
        verbose_name="sha256",
        help_text="SHA-256 of the file's bytes; files are stored by content, so equal bytes are stored once",
    )
    original_name = models.CharField(max_length=255, blank=True, default="", verbose_name="original name", help_text="File name at import")
    is_public = models.BooleanField(default=True, verbose_name="public", help_text="Visible to everyone")
    uploaded_by = acting_user("uploaded by", "Who added the image")
    created = models.DateTimeField(auto_now_add=True, verbose_name="created", help_text="When the image was stored [UTC]")

    class Meta:
        ordering = ["galaxy_id", "band"]
        indexes = [models.Index(fields=["galaxy", "band"])]
        constraints = [models.UniqueConstraint(fields=["galaxy", "band", "sha256"], name="image_unique_content_per_band")]

    def __str__(self) -> str:
        return f"PGC {self.galaxy_id} {self.band} ({self.survey})"


# ---------------------------------------------------------------------------------------------
# Releases
# ---------------------------------------------------------------------------------------------
class Release(models.Model):
    """A named, versioned catalog table: frozen rows of chosen values, with a citation."""

    class Status(models.TextChoices):
        DRAFT = "draft", "draft"
        PUBLISHED = "published", "published"

    slug = models.SlugField(max_length=80, unique=True, verbose_name="slug", help_text="Identifier used in URLs, e.g. cf4-candidates-v1")
    name = models.CharField(max_length=200, verbose_name="name", help_text="Name of the table, e.g. 'CF4 candidates'")
    version = models.CharField(max_length=40, verbose_name="version", help_text="Version label, e.g. '1.0'")
    description = models.TextField(blank=True, default="", verbose_name="description", help_text="What the table holds and how it was made")
    citation = models.TextField(blank=True, default="", verbose_name="citation", help_text="How to cite this release")
    query = models.JSONField(default=dict, blank=True, verbose_name="query", help_text="Filter parameters that selected the rows")
    columns = models.JSONField(default=list, blank=True, verbose_name="columns", help_text="Registry names of the frozen columns")
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.DRAFT, verbose_name="status", help_text="Published releases are immutable"
    )
    is_public = models.BooleanField(
        default=True, verbose_name="public", help_text="Visible to everyone; private releases are for members only"
    )
    row_count = models.PositiveIntegerField(default=0, verbose_name="rows", help_text="Number of rows")
    created_by = acting_user("created by", "Who made the release")
    created = models.DateTimeField(auto_now_add=True, verbose_name="created", help_text="When the release was made [UTC]")
    published_at = models.DateTimeField(null=True, blank=True, verbose_name="published", help_text="When the release was frozen [UTC]")

    class Meta:
        ordering = ["-created"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="release_name_version_unique")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def is_published(self) -> bool:
        return self.status == self.Status.PUBLISHED


class ReleaseRow(models.Model):
    """One frozen row of a release: the values of its columns at freezing time."""

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="rows", verbose_name="release", help_text="The release")
    galaxy = models.ForeignKey(Galaxy, on_delete=models.PROTECT, related_name="release_rows", verbose_name="galaxy", help_text="The galaxy")
    ra = models.FloatField(null=True, verbose_name="ra", help_text="Right ascension at freezing time [deg]")
    dec = models.FloatField(null=True, verbose_name="dec", help_text="Declination at freezing time [deg]")
    healpix = models.BigIntegerField(
        null=True, db_index=True, verbose_name="healpix", help_text="HEALPix nested depth-29 index at freezing time"
    )
    values = models.JSONField(verbose_name="values", help_text="Frozen column values keyed by registry name")

    class Meta:
        ordering = ["release_id", "galaxy_id"]
        constraints = [models.UniqueConstraint(fields=["release", "galaxy"], name="release_row_unique")]

    def __str__(self) -> str:
        return f"{self.release_id}: PGC {self.galaxy_id}"
