"""The GALCAT_ settings the jobs app reads (defaults: config/settings.py, see core.conf)."""

from core.conf import AppSettings

conf = AppSettings(
    "jobs",
    "GPU_QUEUE",
    "GPU_TASKS",
    "JOB_HEARTBEAT",
    "JOB_LOST_AFTER",
    "NIGHTLY_HOUR",
    "NIGHTLY_TASKS",
    "PIPELINE_TIMEOUT",
    "Q_KEEP_DAYS",
    "Q_KEEP_FAILED_DAYS",
    "Q_RELEASE_AFTER",
    "TASKS_SYNC",
    "TRIGGER_DEBOUNCE",
    "TRIGGER_MAX_WAIT",
)
