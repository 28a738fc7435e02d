"""The GALCAT_ settings the fitting app reads (defaults: config/settings.py, see core.conf)."""

from core.conf import AppSettings

conf = AppSettings(
    "fitting",
    "FIT_INIT",
    "IMAGE_BATCH_SIZE",
    "Q0",
)
