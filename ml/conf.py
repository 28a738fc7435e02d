"""The GALCAT_ settings the ml app reads (defaults: config/settings.py, see core.conf)."""

from core.conf import AppSettings

conf = AppSettings(
    "ml",
    "FILE_TIMEOUT",
    "FILE_WORKERS",
    "IMAGE_BATCH_SIZE",
    "IMAGE_MIN_SIZE",
    "ML_COMPILE",
    "MORPH_DRAWS",
    "MORPH_PASSES",
    "MORPH_PSF_FWHM",
    "Q0",
    "SAMPLE_DATA",
    "UPLOAD_MAX_BYTES",
    "UPLOAD_MAX_PIXELS",
)
