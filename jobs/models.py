"""The job system: every long operation is a Job row with its progress."""

from __future__ import annotations

from django.db import models

from core.fields import acting_user


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
    created_by = acting_user("owner", "Who started the job", related_name="jobs")
    created = models.DateTimeField(auto_now_add=True, db_index=True, verbose_name="created", help_text="When the job was created [UTC]")
    started = models.DateTimeField(null=True, blank=True, verbose_name="started", help_text="When a worker started it [UTC]")
    finished = models.DateTimeField(null=True, blank=True, verbose_name="finished", help_text="When it ended [UTC]")
    heartbeat = models.DateTimeField(null=True, blank=True, verbose_name="heartbeat", help_text="Last sign of life from its worker [UTC]")

    class Meta:
        db_table = "catalog_job"  # the table it had in the catalog app
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class TriggerItem(models.Model):
    """An id added to a trigger collector (jobs.triggers), waiting for the collector's flush.

    Append-only, so adding ids (a vote, an import) is one INSERT with no lock shared between
    senders; a flush deletes every row of its kind in the transaction that queues their work.
    """

    kind = models.CharField(max_length=40, verbose_name="kind", help_text="Collector kind, e.g. collect_votes")
    item = models.BigIntegerField(verbose_name="item", help_text="Id of the new row (an image, a galaxy)")
    created = models.DateTimeField(verbose_name="created", help_text="When it was added [UTC]")

    class Meta:
        indexes = [models.Index(fields=["kind", "created"], name="jobs_trigger_kind_created")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.item}"
