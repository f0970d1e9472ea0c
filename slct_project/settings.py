"""Settings, all driven by the environment so one code base runs on a laptop and in production.

DATABASE_URL  -- default: SQLite file in .slct/ (WAL, IMMEDIATE transactions)
REDIS_URL     -- default: the embedded redis-server that run.sh/test.sh start (see embedded_redis.py)
SECRET_KEY, DEBUG, ALLOWED_HOSTS
SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_API_URL, SLACK_DEFAULT_CHANNEL, SLACK_COMMAND_USERS (docs/SLACK.md)
SLCT_* -- engine settings, read through slct_workflows.conf
"""
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SLCT_DATA_DIR", BASE_DIR / ".slct"))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


SECRET_KEY = os.environ.get("SECRET_KEY", "dev-insecure-slct-secret-key-change-me-in-production")
DEBUG = _env_bool("DEBUG", True)
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "*").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / Redoc assets served locally (no CDN)
    "django_rq",
    "slct_workflows",
    "slack_integration",
    "slct_project",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "slct_project.urls"
WSGI_APPLICATION = "slct_project.wsgi.application"

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


def _database() -> dict:
    url = os.environ.get("DATABASE_URL", "")
    if url:
        db = dj_database_url.parse(url, conn_max_age=600)
    else:
        db = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DATA_DIR / "db.sqlite3")}
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets readers run beside the single writer; IMMEDIATE makes writers queue on
        # BEGIN (for `timeout` seconds) instead of failing with "database is locked" mid-step.
        db.setdefault("OPTIONS", {}).update(
            {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
        )
        # A file (not :memory:) so that RQ worker processes in the tests share the test database;
        # one per test run, so that runs side by side do not delete each other's.
        db["TEST"] = {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")}
        # Kept open across jobs, as for PostgreSQL: a new connection per job re-runs the PRAGMAs.
        db["CONN_MAX_AGE"] = 600
    else:
        # One test database per test run, so that runs side by side do not drop each other's.
        db["TEST"] = {"NAME": f"test_{db.get('NAME') or 'slct'}_{os.getpid()}"}
    return db


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "") or f"redis://127.0.0.1:{os.environ.get('SLCT_EMBEDDED_REDIS_PORT', '6390')}/0"
SLCT_QUEUE = os.environ.get("SLCT_QUEUE", "slct")
RQ_QUEUES = {
    SLCT_QUEUE: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 300},
}
# Non-forking workers: a fork per job costs ~10 ms and caps a worker at ~75 jobs/s. Every step is
# a short database transaction with its own locking, so running jobs in the worker process keeps
# all guarantees (a crash mid-step rolls the transaction back; the sweep re-enqueues).
RQ = {"WORKER_CLASS": "slct_workflows.worker.Worker"}
RQ_SHOW_ADMIN_LINK = True

AUTH_PASSWORD_VALIDATORS = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SLCT for Django",
    "DESCRIPTION": "Durable processes, goroutines, channels and select.",
    "VERSION": "0.1.0",
    "SCHEMA_PATH_PREFIX": "/api/",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ProcessStatusEnum": "slct_workflows.models.ProcessStatus",
        "SendStatusEnum": "slct_workflows.models.SendStatus",
    },
}

SLACK_BOT_TOKEN = os.environ.get("SLACK_BOT_TOKEN", "")
SLACK_SIGNING_SECRET = os.environ.get("SLACK_SIGNING_SECRET", "")
SLACK_API_URL = os.environ.get("SLACK_API_URL", "https://slack.com/api/")
SLACK_DEFAULT_CHANNEL = os.environ.get("SLACK_DEFAULT_CHANNEL", "")  # when a helper gets no channel=
SLACK_COMMAND_USERS = os.environ.get("SLACK_COMMAND_USERS", "")  # user ids allowed to `/slct send` (empty: all)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "slct_workflows": {"handlers": ["console"], "level": os.environ.get("SLCT_LOG_LEVEL", "INFO")},
        "rq.worker": {"handlers": ["console"], "level": os.environ.get("RQ_LOG_LEVEL", "WARNING")},
    },
}
