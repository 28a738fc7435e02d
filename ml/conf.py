"""The GALCAT_ settings the ml app reads (defaults: config/settings.py, see core.conf)."""

from core.conf import AppSettings

conf = AppSettings(
    "ml",
    "IMAGE_BATCH_SIZE",
    "ML_COMPILE",
    "Q0",
    "SAMPLE_DATA",
    "UPLOAD_MAX_BYTES",
)
