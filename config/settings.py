"""Settings of the galaxy catalog. Every deployment knob is an environment variable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import plotly

from config.checks import DEV_SECRET_KEY, require_real_secret_key
from config.database import database_settings

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


TESTING = "pytest" in sys.modules or os.environ.get("GALCAT_TESTING") == "1"

# DEBUG is off unless DJANGO_DEBUG=1. Serving (wsgi, asgi, runserver, qcluster) with DEBUG off and
# the public development key is refused (config.checks); `make run` makes a key of its own.
# The key `make run` keeps in var/ (scripts/run.py), so terminal commands sign what the site checks.
# The site's own files (secret key, admin password; scripts/run.py keeps them there).
GALCAT_VAR_DIR = Path(os.environ.get("GALCAT_VAR_DIR", BASE_DIR / "var"))
SECRET_KEY_FILE = GALCAT_VAR_DIR / "secret_key.txt"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or (
    SECRET_KEY_FILE.read_text().strip() if SECRET_KEY_FILE.exists() and not TESTING else DEV_SECRET_KEY
)
DEBUG = env_bool("DJANGO_DEBUG", False)
if sys.argv[1:2] in (["runserver"], ["qcluster"]):
    require_real_secret_key(DEBUG, SECRET_KEY)
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# Security headers and cookies. GALCAT_HTTPS=1 (a site served over HTTPS) turns on the SSL
# redirect, secure cookies and HSTS (one year); each can be set on its own. Cookies are HttpOnly
# (the CSRF one is read by no script here) and SameSite=Lax either way. `manage.py check --deploy`
# is clean with DJANGO_DEBUG=0, a real DJANGO_SECRET_KEY and GALCAT_HTTPS=1.
GALCAT_HTTPS = env_bool("GALCAT_HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", GALCAT_HTTPS)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SESSION_COOKIE_SECURE", GALCAT_HTTPS)
CSRF_COOKIE_SECURE = env_bool("DJANGO_CSRF_COOKIE_SECURE", GALCAT_HTTPS)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31536000 if GALCAT_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", GALCAT_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", GALCAT_HTTPS)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (only then: the header is trusted).
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = env_bool("DJANGO_CSRF_COOKIE_HTTPONLY", True)
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
SECURE_REFERRER_POLICY = os.environ.get("DJANGO_SECURE_REFERRER_POLICY", "same-origin")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy header of every answer (core.middleware.SecurityHeadersMiddleware);
# empty sends none. Inline scripts and styles stay allowed: the pages and the API docs use them.
GALCAT_CSP = os.environ.get(
    "GALCAT_CSP",
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "jobs",
    "catalog",
    "zoo",
    "accounts",
    "fitting",
    "ml",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.RequestLimitsMiddleware",  # body size (413), NUL in the address (400)
    "core.middleware.SecurityHeadersMiddleware",  # Content-Security-Policy
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.middleware.PublicCacheMiddleware",  # short-lived copies of public pages for anonymous GETs
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.api.errors.ApiJsonErrorsMiddleware",  # JSON errors, never HTML, under /api/
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "catalog.context_processors.site",
            ],
        },
    },
]

DATABASES = {"default": database_settings(BASE_DIR)}
# One test database per test process, so several test runs can share one server.
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("GALCAT_TEST_DB", f"test_galcat_{os.getpid()}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
# plotly.js is served from the installed plotly package (no CDN: the site works offline).
STATICFILES_DIRS = [BASE_DIR / "static", ("vendor/plotly", Path(plotly.__file__).parent / "package_data")]
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = Path(os.environ.get("GALCAT_STATIC_ROOT", BASE_DIR / "var" / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise serves collected files from here
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("GALCAT_MEDIA_ROOT", BASE_DIR / "var" / "media"))
# /media/ goes through catalog.media's access check (private images for members only). Folders
# under MEDIA_ROOT anyone may read (rendered zoo standards), and the internal location of a front
# server (nginx X-Accel-Redirect, e.g. "/protected-media/") that then sends the bytes; empty:
# Django sends them.
GALCAT_MEDIA_PUBLIC_PREFIXES = [p for p in os.environ.get("GALCAT_MEDIA_PUBLIC_PREFIXES", "standards/").split(",") if p]
GALCAT_MEDIA_ACCEL_REDIRECT = os.environ.get("GALCAT_MEDIA_ACCEL_REDIRECT", "")

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"
EMAIL_BACKEND = os.environ.get("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "galcat@localhost")

# Uploads: refuse bodies beyond these before they reach the views.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("GALCAT_DATA_UPLOAD_MAX_BYTES", 10 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Multipart bodies (file uploads; past FILE_UPLOAD_MAX_MEMORY_SIZE they go to temporary files):
# larger ones answer 413 before they are read (core.middleware); other bodies, JSON included,
# are held to DATA_UPLOAD_MAX_MEMORY_SIZE.
GALCAT_REQUEST_MAX_BYTES = env_int("GALCAT_REQUEST_MAX_BYTES", 64 * 1024 * 1024)

# Anonymous GETs of these public views are answered from a copy at most this many seconds old,
# kept in each web process (core.middleware.PublicCacheMiddleware; 0 turns it off), within a
# budget of bytes per process. Signed-in users and token clients always get fresh answers.
GALCAT_PUBLIC_CACHE_SECONDS = env_float("GALCAT_PUBLIC_CACHE_SECONDS", 2.0)
# The count of located galaxies (the unfiltered browse list, the home page, the sky map's key)
# is kept per web process while the galaxy table is unchanged, at most this many seconds
# (catalog.selectors.located_count; 0 counts on every request).
GALCAT_COUNT_CACHE_SECONDS = env_float("GALCAT_COUNT_CACHE_SECONDS", 300.0)
GALCAT_PUBLIC_CACHE_BYTES = env_int("GALCAT_PUBLIC_CACHE_BYTES", 32 * 1024 * 1024)
GALCAT_PUBLIC_CACHE_VIEWS = (
    "catalog:home",
    "catalog:galaxy-list",
    "catalog:galaxy-detail",
    "catalog:scs",
    "galaxy-list",
    "galaxy-detail",
)

# ---------------------------------------------------------------------------------------------
# Catalog knobs
# ---------------------------------------------------------------------------------------------
# Folder of the shared sample data (EDD table, GIZ votes, SDSS images).
GALCAT_SAMPLE_DATA = Path(os.environ.get("GALCAT_SAMPLE_DATA", BASE_DIR.parent / "shared" / "data"))
# Intrinsic edge-on axis ratio of disks for the axis-ratio inclination (0.1-0.3 in practice;
# Hubble 1926 relation, q0 = 0.2 in Tully & Fisher 1977, 0.3 is a common default).
GALCAT_Q0 = env_float("GALCAT_Q0", 0.3)
# The CNN ensemble registered when no model version is active comes from $GALCAT_ML_WEIGHTS
# (ml/weights, the default trained on a CPU, when unset; ml/weights_gpu, the longer GPU run), read
# by ml.weights_files without Django; `manage.py register_model DIR` switches a running site.
# Run the CNN members through torch.compile in worker processes (~1.2x the images/s on a CPU
# after ~15 s of compilation per member and batch shape).
GALCAT_ML_COMPILE = env_bool("GALCAT_ML_COMPILE", False)
# Morphology posteriors (ml.morph): PSF FWHM given to the network for catalog images, which carry no
# PSF model (fitted pixels, after the fit's block averaging), MC-dropout passes and posterior samples
# stored per image; fits start from the network's values through GALCAT_FIT_INIT (a dotted path,
# f(data list, sigma list, model kind) -> start values or None; empty: moments only) when a
# morphology version is active.
GALCAT_MORPH_PSF_FWHM = env_float("GALCAT_MORPH_PSF_FWHM", 2.0)
GALCAT_MORPH_PASSES = env_int("GALCAT_MORPH_PASSES", 50)
GALCAT_MORPH_DRAWS = env_int("GALCAT_MORPH_DRAWS", 2000)
GALCAT_FIT_INIT = os.environ.get("GALCAT_FIT_INIT", "ml.services.morph_initial_values")
# Latent space (ml.latent, ml.latent_services): HNSW index build parameters of each latent version
# (m links per node, ef_construction candidates while building) and hnsw.ef_search per query
# (bench/latent_bench.py measures recall and latency), neighbours closer than this on the sky
# dropped from similar galaxies as trivial matches (Walmsley et al. 2022 use 100 arcsec), the most
# neighbours one query may ask for, the most points drawn on the latent map.
GALCAT_LATENT_HNSW_M = env_int("GALCAT_LATENT_HNSW_M", 16)
GALCAT_LATENT_HNSW_EF_CONSTRUCTION = env_int("GALCAT_LATENT_HNSW_EF_CONSTRUCTION", 64)
GALCAT_LATENT_EF_SEARCH = env_int("GALCAT_LATENT_EF_SEARCH", 100)
GALCAT_LATENT_EXCLUDE_ARCSEC = env_float("GALCAT_LATENT_EXCLUDE_ARCSEC", 100.0)
GALCAT_LATENT_MAX_K = env_int("GALCAT_LATENT_MAX_K", 100)
GALCAT_LATENT_MAP_LIMIT = env_int("GALCAT_LATENT_MAP_LIMIT", 20000)
# Images: largest file and largest decoded size accepted by the importer and uploads.
GALCAT_IMAGE_MAX_BYTES = env_int("GALCAT_IMAGE_MAX_BYTES", 50 * 1024 * 1024)
GALCAT_IMAGE_MAX_PIXELS = env_int("GALCAT_IMAGE_MAX_PIXELS", 8192 * 8192)
GALCAT_UPLOAD_MAX_BYTES = env_int("GALCAT_UPLOAD_MAX_BYTES", 5 * 1024 * 1024)
# Uploads (API, upload page, POST /api/file): largest decoded size, checked from the header before
# any pixel is decoded (decoding takes up to ~25 bytes per pixel: 3072x3072 stays under 300 MB),
# and the shorter side the CNN needs at least [pixel].
GALCAT_UPLOAD_MAX_PIXELS = env_int("GALCAT_UPLOAD_MAX_PIXELS", 3072 * 3072)
GALCAT_IMAGE_MIN_SIZE = env_int("GALCAT_IMAGE_MIN_SIZE", 16)
# POST /api/file runs the CNN in the web process: at most GALCAT_FILE_WORKERS at a time per
# process (others answer 503 with Retry-After), each given GALCAT_FILE_TIMEOUT seconds.
GALCAT_FILE_WORKERS = env_int("GALCAT_FILE_WORKERS", 1)
GALCAT_FILE_TIMEOUT = env_float("GALCAT_FILE_TIMEOUT", 30.0)
# Catalog tables (import_catalog): largest file accepted; the import streams, so memory does not grow with it.
GALCAT_TABLE_MAX_BYTES = env_int("GALCAT_TABLE_MAX_BYTES", 4 * 1024**3)
# Cone search: largest radius accepted by the IVOA cone search (deg).
GALCAT_SCS_MAX_SR = env_float("GALCAT_SCS_MAX_SR", 10.0)
# Panels shown on the galaxy page; each template gets `galaxy` in its context.
GALCAT_GALAXY_PANELS = [
    p
    for p in os.environ.get(
        "GALCAT_GALAXY_PANELS", "zoo/panel.html,ml/panel.html,ml/morph_panel.html,ml/similar_panel.html,fitting/panel.html"
    ).split(",")
    if p
]
# Derived catalog columns (browse, filters, API fields=, downloads, releases): dotted paths of
# callables returning catalog.columns.DerivedColumn lists, one per app that computes values.
GALCAT_DERIVED_COLUMNS = [
    p
    for p in os.environ.get(
        "GALCAT_DERIVED_COLUMNS", "zoo.columns.derived_columns,ml.columns.derived_columns,fitting.columns.derived_columns"
    ).split(",")
    if p
]
GALCAT_SITE_NAME = os.environ.get("GALCAT_SITE_NAME", "Galaxy Catalog")
# Galaxy Inclination Zoo (zoo.voting, zoo.consensus, zoo.services).
# Run by load_sample after the table and images: import the sample's GIZ votes, seed the voting
# page's standards and the calibration galaxies.
GALCAT_SAMPLE_HOOKS = [
    p for p in os.environ.get("GALCAT_SAMPLE_HOOKS", "zoo.importers.load_sample_votes,zoo.standards.seed_standards_hook").split(",") if p
]
# Consensus method (a zoo.methods.ConsensusMethod subclass). JointConsensus won against held-out
# published inclinations (`consensus_report --truth`; issue 17): 2.21/1.93 deg RMS vs 2.51/2.41 for the plain mean.
GALCAT_CONSENSUS_METHOD = os.environ.get("GALCAT_CONSENSUS_METHOD", "zoo.methods.JointConsensus")
# Scores of the consensus methods against held-out published inclinations, written by
# `consensus_report --truth FILE --save-scores` and shown on the galaxy page and /compare/.
GALCAT_CONSENSUS_SCORES = os.environ.get("GALCAT_CONSENSUS_SCORES", str(BASE_DIR / "zoo" / "truth_scores.json"))
# Votes per volunteer: at most N per SECONDS ("N/SECONDS"); more raise zoo.voting.RateLimited.
GALCAT_VOTE_RATE = os.environ.get("GALCAT_VOTE_RATE", "20/60")
# Share of voting-page targets that are calibration galaxies of known inclination.
GALCAT_ZOO_CALIBRATION_RATE = env_float("GALCAT_ZOO_CALIBRATION_RATE", 0.2)
# Optional dotted path of fn(pgcs) -> {pgc: uncertainty}: how unsure the machine is (CNN ensemble
# spread, distance from the axis-ratio estimate); the voting page shows the least sure first.
GALCAT_ZOO_UNCERTAINTY = os.environ.get("GALCAT_ZOO_UNCERTAINTY", "zoo.services.prediction_uncertainty")

# ---------------------------------------------------------------------------------------------
# django-q2 on the ORM broker (see NOTES.md for the measured effect of each setting)
# ---------------------------------------------------------------------------------------------
# Two queues: `cpu` (every machine runs this cluster) and `gpu` (clusters on CUDA machines,
# started with Q_CLUSTER_NAME=gpu; scripts/run.py does it). A cluster's name is its queue.
# GALCAT_GPU_QUEUE=1 tells the enqueuing side that some machine runs a gpu cluster, so GPU work
# goes there; otherwise it stays on cpu (jobs.tasks.queue_for).
GALCAT_GPU_QUEUE = env_bool("GALCAT_GPU_QUEUE", False)
GALCAT_Q_TIMEOUT = env_int("GALCAT_Q_TIMEOUT", 1800)
GALCAT_Q_RETRY = env_int("GALCAT_Q_RETRY", 2100)
Q_CLUSTER = {
    # The cpu cluster's name is also the site prefix (signing salt of queued tasks, and the
    # cluster that runs schedules): every cluster of the site shares it.
    "name": "cpu",
    "orm": "default",
    "workers": env_int("GALCAT_Q_WORKERS", 2),
    # Default per-task timeout (s); batch tasks pass their own (jobs.tasks.run_batched).
    "timeout": GALCAT_Q_TIMEOUT,
    # A task whose worker died is re-delivered after `retry` s: must exceed every task's timeout.
    "retry": GALCAT_Q_RETRY,
    "max_attempts": env_int("GALCAT_Q_MAX_ATTEMPTS", 3),
    "save_limit": 0,  # keep results; jobs.tasks.prune_results deletes old ones (save_limit > 0 locks the queue)
    # Tasks a cluster takes ahead of its workers: few, so little waits in a cluster that dies
    # (jobs.tasks.recover_lost_work releases what a dead one took after GALCAT_Q_RELEASE_AFTER).
    "queue_limit": env_int("GALCAT_Q_QUEUE_LIMIT", 8),
    "bulk": 1,
    "catch_up": False,
    "ack_failures": True,
    "poll": env_float("GALCAT_Q_POLL", 0.5),
    "label": "Task queue",
    "ALT_CLUSTERS": {
        "gpu": {
            "workers": env_int("GALCAT_Q_GPU_WORKERS", 1),  # one process per GPU
            "timeout": env_int("GALCAT_Q_GPU_TIMEOUT", GALCAT_Q_TIMEOUT),
            "retry": env_int("GALCAT_Q_GPU_RETRY", GALCAT_Q_RETRY),
        },
    },
}
if os.environ.get("GALCAT_REDIS_URL"):
    # Redis broker for many machines when the ORM broker's polling is the bottleneck
    # (pip install redis); results and schedules stay in PostgreSQL.
    Q_CLUSTER["redis"] = os.environ["GALCAT_REDIS_URL"]
    Q_CLUSTER.pop("orm")
# Jobs: worker heartbeat interval and the silence after which a running job counts as lost (s).
# Work of a worker that died is queued again at once (jobs.tasks.recover_lost_work); a job task a
# cluster took but has not started after GALCAT_Q_RELEASE_AFTER s is released to every cluster
# (its pusher may have died with it; a second delivery of a live one is skipped).
GALCAT_JOB_HEARTBEAT = env_float("GALCAT_JOB_HEARTBEAT", 10.0)
GALCAT_JOB_LOST_AFTER = env_float("GALCAT_JOB_LOST_AFTER", 60.0)
GALCAT_Q_RELEASE_AFTER = env_float("GALCAT_Q_RELEASE_AFTER", 20.0)
# Task results kept (days) before the daily prune; failures are kept longer.
GALCAT_Q_KEEP_DAYS = env_float("GALCAT_Q_KEEP_DAYS", 7)
GALCAT_Q_KEEP_FAILED_DAYS = env_float("GALCAT_Q_KEEP_FAILED_DAYS", 30)
# Run queued tasks inline (tests only).
GALCAT_TASKS_SYNC = env_bool("GALCAT_TASKS_SYNC", False)
# Automatic triggers: new images go through these batch functions, f(image_ids) (fit, predict);
# new votes through the consensus function, f(galaxy_ids). Ids are collected for
# GALCAT_TRIGGER_DEBOUNCE s after the last addition (at most GALCAT_TRIGGER_MAX_WAIT s) and then
# queued as batch jobs of GALCAT_IMAGE_BATCH_SIZE images (jobs.triggers).
GALCAT_IMAGE_PIPELINE = [
    p
    for p in os.environ.get(
        "GALCAT_IMAGE_PIPELINE", "fitting.tasks.fit_images,ml.tasks.predict_images,ml.tasks.morph_images,ml.tasks.embed_images"
    ).split(",")
    if p
]
GALCAT_IMAGE_BATCH_SIZE = env_int("GALCAT_IMAGE_BATCH_SIZE", 64)
# Timeout of one triggered batch (s): a fit or prediction batch of GALCAT_IMAGE_BATCH_SIZE images,
# or a whole consensus run; kept below the cluster's retry.
GALCAT_PIPELINE_TIMEOUT = env_int("GALCAT_PIPELINE_TIMEOUT", 900)
GALCAT_CONSENSUS_TASK = os.environ.get("GALCAT_CONSENSUS_TASK", "zoo.consensus.run_consensus_task")
GALCAT_TRIGGER_DEBOUNCE = env_float("GALCAT_TRIGGER_DEBOUNCE", 10.0)
GALCAT_TRIGGER_MAX_WAIT = env_float("GALCAT_TRIGGER_MAX_WAIT", 300.0)
# Nightly recomputation of stale derived data: dotted paths of functions called with no
# argument (each one decides what is stale); those that do not import are skipped.
GALCAT_NIGHTLY_TASKS = [
    p
    for p in os.environ.get(
        "GALCAT_NIGHTLY_TASKS", "fitting.tasks.fit_stale,ml.tasks.predict_stale,zoo.consensus.run_consensus_task,ml.tasks.latent_sweep"
    ).split(",")
    if p
]
# Which of the pipeline/nightly functions want the gpu queue (when one is configured).
GALCAT_GPU_TASKS = [
    p
    for p in os.environ.get(
        "GALCAT_GPU_TASKS",
        "fitting.tasks.fit_images,ml.tasks.predict_images,fitting.tasks.fit_stale,ml.tasks.predict_stale,ml.tasks.embed_images",
    ).split(",")
    if p
]
# Hour (UTC) of the nightly schedule.
GALCAT_NIGHTLY_HOUR = env_int("GALCAT_NIGHTLY_HOUR", 2)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("GALCAT_LOG_LEVEL", "WARNING")},
    "loggers": {"galcat": {"level": "INFO"}},
}

# REST API (catalog/api, config/api.py). Throttle rates "N/sec|min|hour|day"; empty turns one off.
# Under the test runner they are off unless set (the cache outlives tests; throttle tests set them).
GALCAT_API_THROTTLE_ANON = os.environ.get("GALCAT_API_THROTTLE_ANON", "" if TESTING else "120/min")
GALCAT_API_THROTTLE_USER = os.environ.get("GALCAT_API_THROTTLE_USER", "" if TESTING else "1200/min")
# Inference (POST /api/file) and uploads (POST /api/v1/images/) have their own, lower rate, per
# user or anonymous address; login attempts per account and per address (accounts.throttle).
GALCAT_API_THROTTLE_INFERENCE = os.environ.get("GALCAT_API_THROTTLE_INFERENCE", "" if TESTING else "10/min")
GALCAT_API_THROTTLE_UPLOAD = os.environ.get("GALCAT_API_THROTTLE_UPLOAD", "" if TESTING else "60/hour")
GALCAT_LOGIN_FAILURES_PER_ACCOUNT = os.environ.get("GALCAT_LOGIN_FAILURES_PER_ACCOUNT", "" if TESTING else "5/300")
GALCAT_LOGIN_FAILURES_PER_IP = os.environ.get("GALCAT_LOGIN_FAILURES_PER_IP", "" if TESTING else "20/300")
# Dotted paths of fn(galaxy, request) -> dict merged into the API's galaxy detail (consensus,
# predictions, fits): apps the catalog must not import contribute this way.
GALCAT_GALAXY_API_EXTRAS = [
    p
    for p in os.environ.get(
        "GALCAT_GALAXY_API_EXTRAS", "zoo.api_v1.galaxy_extras,ml.api_v1.galaxy_extras,fitting.api_v1.galaxy_extras"
    ).split(",")
    if p
]

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "catalog.api.schema.AutoSchema",  # anonymous reads declared as such
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # Token first: unauthenticated API calls then answer 401 with WWW-Authenticate: Token.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["core.api.throttles.AnonThrottle", "core.api.throttles.UserThrottle"],
    # Reverse proxies in front of the site: 0 counts clients by REMOTE_ADDR (X-Forwarded-For ignored).
    "NUM_PROXIES": env_int("GALCAT_API_NUM_PROXIES", 0),
    "EXCEPTION_HANDLER": "core.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Galaxy Catalog API",
    "DESCRIPTION": "Galaxies, images, inclination votes, CNN predictions and profile fits.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "COMPONENT_SPLIT_REQUEST": True,
    # Two choice sets of fields named "kind": name each (else check --deploy warns of a collision).
    "ENUM_NAME_OVERRIDES": {"VoteKindEnum": "zoo.models.InclinationVote.Kind", "MorphologyKindEnum": "ml.models.MorphologyPosterior.Kind"},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "catalog.api.schema.add_column_units",
        "catalog.api.schema.add_error_responses",
    ],
}
