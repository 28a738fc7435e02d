"""The relational core of the catalog: galaxies, names, images, releases, votes and jobs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from catalog.columns import COLUMNS, Column
from catalog.names import display_name, normalise_name
from catalog.sky import check_position, derived_coordinates, healpix_index

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
            raise ValueError("moving galaxies needs healpix too: use catalog.services.set_positions()")
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
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="uploaded by",
        help_text="Who added the image",
    )
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
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="created by",
        help_text="Who made the release",
    )
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


# ---------------------------------------------------------------------------------------------
# Volunteer votes
# ---------------------------------------------------------------------------------------------
GIZ_FLAGS = ("not_sure", "better_image", "bad_tf", "ambiguous", "disturbed", "hi", "face_on", "not_spiral", "multiple")


class InclinationVote(models.Model):
    """One volunteer's inclination measurement of one galaxy (Galaxy Inclination Zoo).

    Append-only: a database trigger refuses UPDATE. A volunteer votes once per galaxy and
    voting round; a curator opens a new round to collect fresh votes.
    """

    class Kind(models.TextChoices):
        TARGET = "target", "ordinary target"
        CALIBRATION = "calibration", "calibration galaxy of known inclination"
        TUTORIAL_GOOD = "tutorial_good", "tutorial: good example"
        TUTORIAL_BAD = "tutorial_bad", "tutorial: bad example"

    class Source(models.TextChoices):
        IMPORT = "import", "imported table"
        WEB = "web", "voting page"
        API = "api", "REST API"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="inclination_votes",
        verbose_name="volunteer",
        help_text="Who voted",
    )
    galaxy = models.ForeignKey(
        Galaxy, on_delete=models.PROTECT, related_name="votes", verbose_name="galaxy", help_text="The galaxy measured"
    )
    inc = models.FloatField(
        null=True, blank=True, verbose_name="inc", help_text="Measured inclination, null when rejected or face-on [deg]"
    )
    rejected = models.BooleanField(
        default=False, verbose_name="rejected", help_text="The volunteer rejected or flagged the galaxy (GIZ flag = 1)"
    )
    std1 = models.PositiveIntegerField(
        null=True, blank=True, verbose_name="standard 1", help_text="PGC of the standard on one side of the target"
    )
    std2 = models.PositiveIntegerField(null=True, blank=True, verbose_name="standard 2", help_text="PGC of the standard on the other side")
    not_sure = models.BooleanField(default=False, verbose_name="not sure", help_text="The volunteer is not sure")
    better_image = models.BooleanField(default=False, verbose_name="better image", help_text="A better image is needed")
    bad_tf = models.BooleanField(default=False, verbose_name="bad TF", help_text="Unsuitable for the Tully-Fisher relation")
    ambiguous = models.BooleanField(default=False, verbose_name="ambiguous", help_text="Ambiguous morphology")
    disturbed = models.BooleanField(default=False, verbose_name="disturbed", help_text="Disturbed or interacting")
    hi = models.BooleanField(default=False, verbose_name="HI", help_text="HI profile problem")
    face_on = models.BooleanField(default=False, verbose_name="face-on", help_text="More face-on than 45 deg")
    not_spiral = models.BooleanField(default=False, verbose_name="not spiral", help_text="Not a spiral galaxy")
    multiple = models.BooleanField(default=False, verbose_name="multiple", help_text="Several galaxies in the image")
    note = models.TextField(blank=True, default="", verbose_name="note", help_text="Free-text note by the volunteer")
    kind = models.CharField(
        max_length=16,
        choices=Kind.choices,
        default=Kind.TARGET,
        verbose_name="kind",
        help_text="Ordinary target, calibration or tutorial item",
    )
    source = models.CharField(
        max_length=8, choices=Source.choices, default=Source.WEB, verbose_name="source", help_text="How the vote arrived"
    )
    round = models.PositiveSmallIntegerField(
        default=0, verbose_name="round", help_text="Voting round of the galaxy (a curator opens new rounds)"
    )
    giz_id = models.PositiveIntegerField(
        null=True, blank=True, unique=True, verbose_name="GIZ id", help_text="Vote id in an imported GIZ table"
    )
    client_token = models.CharField(
        max_length=64,
        null=True,
        blank=True,
        unique=True,
        verbose_name="client token",
        help_text="One-time token of the voting form; a replayed form is refused",
    )
    checkout_time = models.DateTimeField(null=True, blank=True, verbose_name="check-out", help_text="When the target was shown [UTC]")
    checkin_time = models.DateTimeField(null=True, blank=True, verbose_name="check-in", help_text="When the vote was submitted [UTC]")
    created = models.DateTimeField(default=timezone.now, verbose_name="created", help_text="When the row was stored [UTC]")

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(fields=["user", "galaxy", "round"], name="vote_once_per_round"),
            models.CheckConstraint(
                name="vote_inc_range",
                condition=models.Q(inc__isnull=True) | models.Q(inc__gte=0, inc__lte=90),
                violation_error_message="inclination must be within [0, 90] deg",
            ),
        ]
        indexes = [models.Index(fields=["galaxy", "round"]), models.Index(fields=["user", "created"])]

    def __str__(self) -> str:
        return f"{self.user} on PGC {self.galaxy_id}: {self.inc}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValueError("inclination votes are append-only")
        super().save(*args, **kwargs)


class Volunteer(models.Model):
    """Volunteer facts beside the user account; pseudonymous imported volunteers cannot log in."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="volunteer", verbose_name="user", help_text="The account"
    )
    pseudonym = models.CharField(max_length=80, unique=True, verbose_name="pseudonym", help_text="Public name on leaderboards")
    imported = models.BooleanField(default=False, verbose_name="imported", help_text="Created by a vote import; not claimed by a person")
    created = models.DateTimeField(auto_now_add=True, verbose_name="created", help_text="When the volunteer joined [UTC]")

    def __str__(self) -> str:
        return self.pseudonym


# ---------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------
class Job(models.Model):
    """A long operation (import, fit batch, prediction batch, training, export) and its progress."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"
        LOST = "lost", "worker lost"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    kind = models.CharField(
        max_length=40, db_index=True, verbose_name="kind", help_text="What the job does, e.g. import_catalog, fit, predict"
    )
    params = models.JSONField(default=dict, blank=True, verbose_name="parameters", help_text="Arguments of the job")
    status = models.CharField(
        max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True, verbose_name="status", help_text="Where the job stands"
    )
    queue = models.CharField(max_length=20, default="cpu", verbose_name="queue", help_text="Worker queue: cpu or gpu")
    done = models.PositiveIntegerField(default=0, verbose_name="done", help_text="Items finished")
    total = models.PositiveIntegerField(default=0, verbose_name="total", help_text="Items in all (0 when unknown)")
    message = models.CharField(max_length=500, blank=True, default="", verbose_name="message", help_text="Latest progress message")
    error = models.TextField(blank=True, default="", verbose_name="error", help_text="Why the job failed")
    log_tail = models.TextField(blank=True, default="", verbose_name="log tail", help_text="Last lines of the job's log")
    result = models.JSONField(default=dict, blank=True, verbose_name="result", help_text="Summary of what the job produced")
    attempts = models.PositiveSmallIntegerField(default=0, verbose_name="attempts", help_text="How many times a worker started it")
    worker = models.CharField(
        max_length=120, blank=True, default="", verbose_name="worker", help_text="Host and pid of the worker running it"
    )
    cancel_requested = models.BooleanField(default=False, verbose_name="cancel requested", help_text="Stop before the next batch")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        verbose_name="owner",
        help_text="Who started the job",
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True, verbose_name="created", help_text="When the job was created [UTC]")
    started = models.DateTimeField(null=True, blank=True, verbose_name="started", help_text="When a worker started it [UTC]")
    finished = models.DateTimeField(null=True, blank=True, verbose_name="finished", help_text="When it ended [UTC]")
    heartbeat = models.DateTimeField(null=True, blank=True, verbose_name="heartbeat", help_text="Last sign of life from its worker [UTC]")

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


# ---------------------------------------------------------------------------------------------
# Galaxy Inclination Zoo: standards, calibration galaxies, voting rounds, consensus
# ---------------------------------------------------------------------------------------------
class ReferenceFlag(models.TextChoices):
    ACCEPTED = "A", "accepted"
    FACE_ON = "F", "face-on"
    REJECTED = "J", "rejected"


class Standard(models.Model):
    """A standard of the voting page: an image of known inclination the target is placed among.

    Real standards are catalog galaxies with an image (giz_standards.csv); rendered standards are
    thick inclined disks drawn by the project's own code, used when no real standard has an image.
    """

    galaxy = models.ForeignKey(
        Galaxy,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="standards",
        verbose_name="galaxy",
        help_text="The standard galaxy; empty for a rendered standard",
    )
    inc = models.FloatField(null=True, blank=True, verbose_name="inc", help_text="Known inclination, null unless accepted [deg]")
    flag = models.CharField(
        max_length=1,
        choices=ReferenceFlag.choices,
        default=ReferenceFlag.ACCEPTED,
        verbose_name="flag",
        help_text="A accepted, F face-on, J rejected",
    )
    image = models.ForeignKey(
        Image,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="image",
        help_text="Catalog image shown for a real standard",
    )
    file = models.FileField(
        upload_to="standards/", max_length=255, blank=True, default="", verbose_name="file", help_text="PNG of a rendered standard"
    )
    rendered = models.BooleanField(default=False, verbose_name="rendered", help_text="Drawn by the project's disk renderer, not observed")
    variant = models.PositiveSmallIntegerField(
        default=0, verbose_name="variant", help_text="Rendering variant (seed) of a rendered standard"
    )
    source = models.CharField(max_length=80, blank=True, default="", verbose_name="source", help_text="Where the standard came from")
    created = models.DateTimeField(auto_now_add=True, verbose_name="created", help_text="When the row was stored [UTC]")

    class Meta:
        ordering = ["inc", "pk"]
        indexes = [models.Index(fields=["rendered", "inc"])]
        constraints = [
            models.UniqueConstraint(fields=["galaxy"], condition=models.Q(galaxy__isnull=False), name="standard_galaxy_once"),
            models.CheckConstraint(
                name="standard_inc_range",
                condition=models.Q(inc__isnull=True) | models.Q(inc__gte=0, inc__lte=90),
                violation_error_message="inclination must be within [0, 90] deg",
            ),
        ]

    def __str__(self) -> str:
        what = f"PGC {self.galaxy_id}" if self.galaxy_id else f"rendered v{self.variant}"
        return f"standard {what} at {self.inc} deg"

    @property
    def url(self) -> str:
        if self.image_id:
            return self.image.file.url
        return self.file.url if self.file else ""


class CalibrationGalaxy(models.Model):
    """A galaxy of known inclination that volunteers measure; calibrates each volunteer."""

    galaxy = models.OneToOneField(
        Galaxy, on_delete=models.CASCADE, related_name="calibration", verbose_name="galaxy", help_text="The calibration galaxy"
    )
    inc = models.FloatField(null=True, blank=True, verbose_name="inc", help_text="Known inclination, null unless accepted [deg]")
    flag = models.CharField(
        max_length=1, choices=ReferenceFlag.choices, verbose_name="flag", help_text="Known flag: A accepted, F face-on, J rejected"
    )
    source = models.CharField(max_length=80, blank=True, default="", verbose_name="source", help_text="Where the known value came from")

    class Meta:
        ordering = ["galaxy_id"]
        verbose_name_plural = "calibration galaxies"
        constraints = [
            models.CheckConstraint(
                name="calibration_inc_range",
                condition=models.Q(inc__isnull=True) | models.Q(inc__gte=0, inc__lte=90),
                violation_error_message="inclination must be within [0, 90] deg",
            ),
        ]

    def __str__(self) -> str:
        return f"calibration PGC {self.galaxy_id}: {self.inc} ({self.flag})"


class VoteRound(models.Model):
    """A voting round a curator opened for a galaxy; volunteers may vote once more in it."""

    galaxy = models.ForeignKey(Galaxy, on_delete=models.CASCADE, related_name="vote_rounds", verbose_name="galaxy", help_text="The galaxy")
    round = models.PositiveSmallIntegerField(verbose_name="round", help_text="Number of the round (the first round, 0, needs no row)")
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="opened by",
        help_text="The curator who opened it",
    )
    reason = models.CharField(max_length=300, blank=True, default="", verbose_name="reason", help_text="Why the galaxy is voted again")
    created = models.DateTimeField(auto_now_add=True, verbose_name="created", help_text="When the round was opened [UTC]")

    class Meta:
        ordering = ["galaxy_id", "round"]
        constraints = [models.UniqueConstraint(fields=["galaxy", "round"], name="vote_round_unique")]

    def __str__(self) -> str:
        return f"PGC {self.galaxy_id} round {self.round}"


class ConsensusInclination(models.Model):
    """The volunteers' consensus inclination of a galaxy by one method; recomputed, never edited."""

    galaxy = models.ForeignKey(Galaxy, on_delete=models.CASCADE, related_name="consensus", verbose_name="galaxy", help_text="The galaxy")
    inc = models.FloatField(null=True, blank=True, verbose_name="inc", help_text="Consensus inclination, null unless accepted [deg]")
    inc_e = models.FloatField(null=True, blank=True, verbose_name="inc_e", help_text="1-sigma error of the consensus inclination [deg]")
    inc_n = models.PositiveIntegerField(default=0, verbose_name="inc_n", help_text="Number of volunteers whose votes were used")
    flag = models.CharField(max_length=1, choices=ReferenceFlag.choices, verbose_name="flag", help_text="A accepted, F face-on, J rejected")
    method = models.CharField(max_length=60, verbose_name="method", help_text="Name of the consensus method")
    version = models.CharField(max_length=20, verbose_name="version", help_text="Version of the consensus method")
    overridden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name="overridden by",
        help_text="Curator whose override set this value, if any",
    )
    computed = models.DateTimeField(default=timezone.now, verbose_name="computed", help_text="When the value was computed [UTC]")

    class Meta:
        ordering = ["galaxy_id"]
        constraints = [models.UniqueConstraint(fields=["galaxy", "method"], name="consensus_once_per_method")]

    def __str__(self) -> str:
        return f"PGC {self.galaxy_id}: {self.inc} +- {self.inc_e} ({self.flag}, {self.method} {self.version})"


class ConsensusOverride(models.Model):
    """A curator's decision on a galaxy's inclination or flag; the latest one always wins."""

    galaxy = models.ForeignKey(
        Galaxy, on_delete=models.CASCADE, related_name="consensus_overrides", verbose_name="galaxy", help_text="The galaxy"
    )
    curator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name="curator", help_text="Who decided"
    )
    inc = models.FloatField(null=True, blank=True, verbose_name="inc", help_text="Inclination set by the curator [deg]")
    inc_e = models.FloatField(null=True, blank=True, verbose_name="inc_e", help_text="Error set by the curator [deg]")
    flag = models.CharField(max_length=1, choices=ReferenceFlag.choices, verbose_name="flag", help_text="A accepted, F face-on, J rejected")
    reason = models.CharField(max_length=300, blank=True, default="", verbose_name="reason", help_text="Why")
    created = models.DateTimeField(default=timezone.now, verbose_name="created", help_text="When the decision was made [UTC]")

    class Meta:
        ordering = ["galaxy_id", "-created"]
        constraints = [
            models.CheckConstraint(
                name="override_inc_range",
                condition=models.Q(inc__isnull=True) | models.Q(inc__gte=0, inc__lte=90),
                violation_error_message="inclination must be within [0, 90] deg",
            ),
            models.CheckConstraint(
                name="override_accepted_has_inc",
                condition=~models.Q(flag="A") | models.Q(inc__isnull=False),
                violation_error_message="an accepted override needs an inclination",
            ),
        ]

    def __str__(self) -> str:
        return f"override PGC {self.galaxy_id}: {self.inc} ({self.flag}) by {self.curator}"


class VolunteerCalibration(models.Model):
    """How the consensus method corrects one volunteer: i' = a * i + b, and their scatter."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="calibrations", verbose_name="volunteer", help_text="The volunteer"
    )
    a = models.FloatField(verbose_name="a", help_text="Slope of the calibration i' = a*i + b (dimensionless)")
    b = models.FloatField(verbose_name="b", help_text="Offset of the calibration i' = a*i + b [deg]")
    sigma = models.FloatField(verbose_name="sigma", help_text="Scatter of one calibrated vote about the references [deg]")
    n_votes = models.PositiveIntegerField(verbose_name="votes", help_text="Measurements used (each galaxy's latest vote)")
    method = models.CharField(max_length=60, verbose_name="method", help_text="Name of the consensus method")
    version = models.CharField(max_length=20, verbose_name="version", help_text="Version of the consensus method")
    computed = models.DateTimeField(default=timezone.now, verbose_name="computed", help_text="When it was computed [UTC]")

    class Meta:
        ordering = ["user_id"]
        constraints = [models.UniqueConstraint(fields=["user", "method"], name="volunteer_calibration_once_per_method")]

    def __str__(self) -> str:
        return f"{self.user}: i' = {self.a:.3f} i + {self.b:.2f} ({self.method} {self.version})"
