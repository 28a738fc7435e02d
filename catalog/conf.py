"""The GALCAT_ settings the catalog app reads (defaults: config/settings.py, see core.conf)."""

from core.conf import AppSettings

conf = AppSettings(
    "catalog",
    "DERIVED_COLUMNS",
    "GALAXY_API_EXTRAS",
    "GALAXY_PANELS",
    "IMAGE_BATCH_SIZE",
    "IMAGE_MAX_BYTES",
    "IMAGE_MIN_SIZE",
    "IMAGE_MAX_PIXELS",
    "IMAGE_PIPELINE",
    "MEDIA_ACCEL_REDIRECT",
    "MEDIA_PUBLIC_PREFIXES",
    "SAMPLE_DATA",
    "SAMPLE_HOOKS",
    "SCS_MAX_SR",
    "SITE_NAME",
    "TABLE_MAX_BYTES",
    "UPLOAD_MAX_BYTES",
    "UPLOAD_MAX_PIXELS",
    "VAR_DIR",
)
