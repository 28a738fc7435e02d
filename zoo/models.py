"""The Galaxy Inclination Zoo: volunteers, their votes, standards, calibration galaxies, voting
rounds and the consensus inclinations computed from the votes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from catalog.models import Galaxy, Image
from core.fields import acting_user

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
        db_table = "catalog_inclinationvote"  # the table it had in the catalog app
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

    class Meta:
        db_table = "catalog_volunteer"  # the table it had in the catalog app

    def __str__(self) -> str:
        return self.pseudonym


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
        db_table = "catalog_standard"  # the table it had in the catalog app
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
        db_table = "catalog_calibrationgalaxy"  # the table it had in the catalog app
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
    opened_by = acting_user("opened by", "The curator who opened it", blank=False)
    reason = models.CharField(max_length=300, blank=True, default="", verbose_name="reason", help_text="Why the galaxy is voted again")
    created = models.DateTimeField(auto_now_add=True, verbose_name="created", help_text="When the round was opened [UTC]")

    class Meta:
        db_table = "catalog_voteround"  # the table it had in the catalog app
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
    overridden_by = acting_user("overridden by", "Curator whose override set this value, if any")
    computed = models.DateTimeField(default=timezone.now, verbose_name="computed", help_text="When the value was computed [UTC]")

    class Meta:
        db_table = "catalog_consensusinclination"  # the table it had in the catalog app
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
        db_table = "catalog_consensusoverride"  # the table it had in the catalog app
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
        db_table = "catalog_volunteercalibration"  # the table it had in the catalog app
        ordering = ["user_id"]
        constraints = [models.UniqueConstraint(fields=["user", "method"], name="volunteer_calibration_once_per_method")]

    def __str__(self) -> str:
        return f"{self.user}: i' = {self.a:.3f} i + {self.b:.2f} ({self.method} {self.version})"


class ConsensusSummary(models.Model):
    """A stored copy of each galaxy's consensus columns (zoo.columns), one row per galaxy with a
    consensus or an override, so tables filter and sort on them through one indexed join.
    Kept by zoo.columns.refresh_consensus_summary; never edited by hand."""

    galaxy = models.OneToOneField(
        Galaxy, primary_key=True, on_delete=models.CASCADE, related_name="consensus_summary", verbose_name="galaxy", help_text="The galaxy"
    )
    consensus_inc = models.FloatField(
        null=True, verbose_name="consensus inc", help_text="Consensus inclination (null unless accepted) [deg]"
    )
    consensus_inc_e = models.FloatField(
        null=True, verbose_name="consensus inc error", help_text="1-sigma error of the consensus inclination [deg]"
    )
    consensus_inc_n = models.IntegerField(null=True, verbose_name="consensus votes", help_text="Volunteers whose votes made the consensus")
    consensus_flag = models.CharField(max_length=1, null=True, verbose_name="consensus flag", help_text="A accepted, F face-on, J rejected")

    class Meta:
        indexes = [
            models.Index(fields=["consensus_inc"], name="zoo_summary_inc"),
            models.Index(fields=["consensus_inc_e"], name="zoo_summary_inc_e"),
            models.Index(fields=["consensus_inc_n"], name="zoo_summary_inc_n"),
            models.Index(fields=["consensus_flag"], name="zoo_summary_flag"),
        ]

    def __str__(self) -> str:
        return f"PGC {self.galaxy_id}: consensus {self.consensus_inc} ({self.consensus_flag})"
