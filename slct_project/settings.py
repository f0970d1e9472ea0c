"""Settings, all driven by the environment so one code base runs on a laptop and in production.

Production is the default: DEBUG is off unless DEBUG=1 is set (scripts/setup-env.sh, sourced by
run.sh and test.sh, sets it for development). With DEBUG off a real SECRET_KEY and ALLOWED_HOSTS
are required and the HTTPS settings are on; docs/SECURITY.md lists the production environment
under which `manage.py check --deploy --fail-level WARNING` passes.

DATABASE_URL  -- default: SQLite file in .slct/ (WAL, IMMEDIATE transactions)
CONN_MAX_AGE  -- seconds a web process keeps a database connection (default 0: one per request)
SLCT_WORKER_CONN_MAX_AGE -- the same for RQ workers (default 600; see slct_workflows.worker)
REDIS_URL     -- default: the embedded redis-server that run.sh/test.sh start (see embedded_redis.py)
DEBUG, SECRET_KEY, SECRET_KEY_FALLBACKS, ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS
SESSION_COOKIE_SECURE, CSRF_COOKIE_SECURE, SECURE_SSL_REDIRECT, SECURE_HSTS_SECONDS,
SECURE_HSTS_INCLUDE_SUBDOMAINS, SECURE_HSTS_PRELOAD, SECURE_PROXY_SSL_HEADER -- docs/SECURITY.md
SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_API_URL, SLACK_DEFAULT_CHANNEL, SLACK_USER_MAP, SLACK_COMMAND_USERS (docs/SLACK.md)
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


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


DEBUG = _env_bool("DEBUG", False)

# -- the secret key -------------------------------------------------------------------------------
# The development key (and the old default every checkout shared) is refused in production, as is
# a key Django's check security.W009 calls weak: signed sessions, password reset tokens and CSRF
# tokens are only as secret as this.
# "django-insecure-" makes Django's own check (security.W009) flag it too.
DEV_SECRET_KEY = "django-insecure-slct-development-key-published-in-the-repository"
KNOWN_PUBLIC_KEYS = {DEV_SECRET_KEY, "dev-insecure-slct-secret-key-change-me-in-production"}
SECRET_KEY_HOWTO = (
    "generate one with: python -c 'from django.core.management.utils import get_random_secret_key; "
    "print(get_random_secret_key())'"
)


SECRET_KEY_INSECURE_PREFIX, SECRET_KEY_MIN_LENGTH, SECRET_KEY_MIN_UNIQUE_CHARACTERS = "django-insecure-", 50, 5


def _secret_key_problem(key: str) -> str | None:
    """Why Django's check security.W009 (the same thresholds) would call this key weak, if it would."""
    if key in KNOWN_PUBLIC_KEYS:
        return "is the published development key"
    if key.startswith(SECRET_KEY_INSECURE_PREFIX):
        return f"starts with {SECRET_KEY_INSECURE_PREFIX!r} (a key made by startproject for development)"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"is {len(key)} characters long; it needs at least {SECRET_KEY_MIN_LENGTH}"
    if len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return f"has {len(set(key))} distinct characters; it needs at least {SECRET_KEY_MIN_UNIQUE_CHARACTERS}"
    return None


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY", "")
    if DEBUG:
        return key or DEV_SECRET_KEY
    if not key:
        raise ImproperlyConfigured(
            f"SECRET_KEY is not set and DEBUG is off (production). Set SECRET_KEY; {SECRET_KEY_HOWTO}. "
            "For development set DEBUG=1 (run.sh and test.sh do)."
        )
    problem = _secret_key_problem(key)
    if problem:
        raise ImproperlyConfigured(f"SECRET_KEY {problem}; DEBUG is off (production), so set a strong key: {SECRET_KEY_HOWTO}.")
    return key


def _secret_key_fallbacks() -> list[str]:
    """Old keys still accepted for signatures while a key is rotated out (whitespace-separated)."""
    keys = os.environ.get("SECRET_KEY_FALLBACKS", "").split()
    for number, key in enumerate(keys, 1):
        problem = None if DEBUG else _secret_key_problem(key)
        if problem:
            raise ImproperlyConfigured(f"SECRET_KEY_FALLBACKS: key {number} {problem}.")
    return keys


SECRET_KEY = _secret_key()
SECRET_KEY_FALLBACKS = _secret_key_fallbacks()

# -- hosts and HTTPS ------------------------------------------------------------------------------
# Development: this machine's names (and "testserver", the test client's host). Production: the
# names the site is served under, required.
DEV_ALLOWED_HOSTS = [".localhost", "127.0.0.1", "[::1]", "testserver"]
ALLOWED_HOSTS = _env_list("ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS is empty and DEBUG is off (production). Set ALLOWED_HOSTS to the comma-separated "
            "host names the site is served under (for example ALLOWED_HOSTS=slct.example.com)."
        )
    ALLOWED_HOSTS = DEV_ALLOWED_HOSTS
# Origins (scheme://host[:port]) allowed to POST with a session cookie, e.g. https://slct.example.com.
CSRF_TRUSTED_ORIGINS = _env_list("CSRF_TRUSTED_ORIGINS")
if any("://" not in origin for origin in CSRF_TRUSTED_ORIGINS):
    raise ImproperlyConfigured(f"CSRF_TRUSTED_ORIGINS entries need a scheme (https://...), got {CSRF_TRUSTED_ORIGINS}")

SESSION_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = _env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Load balancers and Prometheus probe these over plain http inside the network: not redirected.
SECURE_REDIRECT_EXEMPT = [r"^healthz/?$", r"^readyz/?$", r"^metrics/?$"]
SECURE_HSTS_SECONDS = _env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = _env_bool("SECURE_HSTS_PRELOAD", False)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients):
# SECURE_PROXY_SSL_HEADER=1 makes request.is_secure() trust it. Never set it without such a proxy.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if _env_bool("SECURE_PROXY_SSL_HEADER", False) else None
X_FRAME_OPTIONS = "DENY"

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
        "DIRS": [],  # the apps' templates ship inside them (slct_workflows/templates, ...)
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


# Web processes hold a connection only for the request unless CONN_MAX_AGE says otherwise: the
# development server runs each request in a thread of its own, and Django's docs warn against
# persistent connections there. Under gunicorn's threaded workers (pooled threads) a CONN_MAX_AGE
# of 60 or so saves a connect per request. RQ workers keep theirs (slct_workflows.worker sets
# SLCT_WORKER_CONN_MAX_AGE on the connection at bootstrap). A health check before reuse replaces a
# connection the database dropped instead of failing the request with it.
CONN_MAX_AGE = _env_int("CONN_MAX_AGE", 0)
SLCT_WORKER_CONN_MAX_AGE = _env_int("SLCT_WORKER_CONN_MAX_AGE", 600)


def _database() -> dict:
    url = os.environ.get("DATABASE_URL", "")
    if url:
        db = dj_database_url.parse(url, conn_max_age=CONN_MAX_AGE, conn_health_checks=True)
    else:
        db = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DATA_DIR / "db.sqlite3")}
    db["CONN_MAX_AGE"] = CONN_MAX_AGE
    db["CONN_HEALTH_CHECKS"] = True
    if db["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets readers run beside the single writer; IMMEDIATE makes writers queue on
        # BEGIN (for `timeout` seconds) instead of failing with "database is locked" mid-step.
        # (WAL is a property of the file: the PRAGMAs a new connection runs cost microseconds.)
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
    else:
        # One test database per test run, so that runs side by side do not drop each other's.
        db["TEST"] = {"NAME": f"test_{db.get('NAME') or 'slct'}_{os.getpid()}"}
    return db


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "") or f"redis://127.0.0.1:{os.environ.get('SLCT_EMBEDDED_REDIS_PORT', '6390')}/0"


def _with_redis_timeouts(url: str) -> str:
    """Bounded socket timeouts unless the URL sets its own: without them an enqueue from a web
    request waits forever on a Redis that hangs instead of refusing (RQ's workers raise the read
    timeout above their blocking dequeue themselves)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("socket_connect_timeout", "5")
    query.setdefault("socket_timeout", "10")
    return urlunsplit(parts._replace(query=urlencode(query)))


REDIS_URL = _with_redis_timeouts(REDIS_URL)
SLCT_QUEUE = os.environ.get("SLCT_QUEUE", "slct")
RQ_QUEUES = {
    SLCT_QUEUE: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 300},
}
# -- deployment: PgBouncer and Redis Sentinel (slct_project/env.py, docs/DEPLOY.md) -------------
# DATABASE_DISABLE_SERVER_SIDE_CURSORS=1 behind PgBouncer in transaction mode; REDIS_SENTINELS and
# REDIS_SENTINEL_MASTER (with REDIS_URL unset) put the queue on the master Sentinel names.
from slct_project import env as _deploy_env  # noqa: E402

_deploy_env.database_pooling(DATABASES["default"], os.environ)
_sentinel_queue = _deploy_env.sentinel_queue(os.environ)
if _sentinel_queue:
    RQ_QUEUES[SLCT_QUEUE] = {**_sentinel_queue, "DEFAULT_TIMEOUT": RQ_QUEUES[SLCT_QUEUE]["DEFAULT_TIMEOUT"]}
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
# Optional extra gate for `/slct`: only these Slack ids may use it at all (empty: no extra gate;
# it never lets anyone in: `/slct` acts as the Django user a Slack id is linked to, docs/SLACK.md).
SLACK_COMMAND_USERS = os.environ.get("SLACK_COMMAND_USERS", "")

# A worker logs its start, stop, outages and a periodic summary at INFO; RQ's per-job lines are
# DEBUG (slct_workflows/workers/worker.py). `manage.py rqworker` sets rq.worker's level itself from its
# verbosity (-v 0: WARNING, 1: INFO, 2: DEBUG, every job), after this: RQ_LOG_LEVEL applies to the
# other processes that use RQ (the web server enqueueing).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"timed": {"format": "%(asctime)s %(message)s", "datefmt": "%H:%M:%S"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "timed"}},
    "loggers": {
        "slct_workflows": {"handlers": ["console"], "level": os.environ.get("SLCT_LOG_LEVEL", "INFO")},
        "rq.worker": {"handlers": ["console"], "level": os.environ.get("RQ_LOG_LEVEL", "WARNING")},
    },
}
