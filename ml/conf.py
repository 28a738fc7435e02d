"""The GALCAT_ settings the ml app reads (defaults: config/settings.py, see core.conf)."""

from core.conf import AppSettings

conf = AppSettings(
    "ml",
    "FILE_TIMEOUT",
    "FILE_WORKERS",
    "IMAGE_BATCH_SIZE",
    "IMAGE_MIN_SIZE",
    "LATENT_EF_SEARCH",
    "LATENT_EXCLUDE_ARCSEC",
    "LATENT_HNSW_EF_CONSTRUCTION",
    "LATENT_HNSW_M",
    "LATENT_MAP_LIMIT",
    "LATENT_MAX_K",
    "ML_COMPILE",
    "MORPH_DRAWS",
    "MORPH_PASSES",
    "MORPH_PSF_FWHM",
    "Q0",
    "SAMPLE_DATA",
    "UPLOAD_MAX_BYTES",
    "UPLOAD_MAX_PIXELS",
)
