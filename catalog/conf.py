"""The GALCAT_ settings the catalog app reads (defaults: config/settings.py, see core.conf)."""

from core.conf import AppSettings

conf = AppSettings(
    "catalog",
    "GALAXY_API_EXTRAS",
    "GALAXY_PANELS",
    "IMAGE_BATCH_SIZE",
    "IMAGE_MAX_BYTES",
    "IMAGE_MAX_PIXELS",
    "IMAGE_PIPELINE",
    "SAMPLE_DATA",
    "SAMPLE_HOOKS",
    "SCS_MAX_SR",
    "SITE_NAME",
    "UPLOAD_MAX_BYTES",
)
