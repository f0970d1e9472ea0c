"""gunicorn settings for serving SLCT in production (run.sh's `runserver` is for development).

    gunicorn -c gunicorn.conf.py            # serves slct_project.wsgi:application

with the production environment of docs/SECURITY.md (DEBUG off, SECRET_KEY, ALLOWED_HOSTS, ...)
and, beside it, `manage.py rqworker slct --with-scheduler` for the steps. Static files: run
`manage.py collectstatic` and let the reverse proxy serve STATIC_ROOT under /static/.

Environment (all optional):

    PORT                       8000      listen on 0.0.0.0:$PORT ...
    GUNICORN_BIND                        ... unless this says where (e.g. 127.0.0.1:8000, unix:/run/slct.sock)
    WEB_CONCURRENCY            2*cores+1 worker processes (at most 8 by default)
    GUNICORN_THREADS           4         threads per worker (gthread worker class when > 1)
    GUNICORN_TIMEOUT           30        seconds a request may take before its worker is restarted
    GUNICORN_GRACEFUL_TIMEOUT  30        seconds workers get to finish requests on restart/SIGTERM
    GUNICORN_KEEPALIVE         5         seconds an idle keep-alive connection is held
    GUNICORN_MAX_REQUESTS      1000      a worker is replaced after this many requests (0: never) ...
    GUNICORN_MAX_REQUESTS_JITTER 100     ... plus up to this many, so workers do not restart together
    GUNICORN_ACCESS_LOG        -         access log file ("-": stdout; "" turns it off)
    GUNICORN_ERROR_LOG         -         error log file ("-": stderr)
    GUNICORN_LOG_LEVEL         info
    FORWARDED_ALLOW_IPS        127.0.0.1 proxies trusted for X-Forwarded-* (read by gunicorn itself)

Database connections: each worker thread holds at most one, so a web host uses at most
WEB_CONCURRENCY x GUNICORN_THREADS; with CONN_MAX_AGE > 0 they are kept between requests (the
threads are pooled, unlike runserver's), checked before reuse (CONN_HEALTH_CHECKS). Size the
database's max_connections for that plus the RQ workers (one each, plus one for the timer loop).
"""
from __future__ import annotations

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"gunicorn.conf.py: {name} must be an integer, got {raw!r}") from None


wsgi_app = "slct_project.wsgi:application"

bind = [os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{_int('PORT', 8000)}"]
workers = _int("WEB_CONCURRENCY", min(multiprocessing.cpu_count() * 2 + 1, 8))
threads = _int("GUNICORN_THREADS", 4)
worker_class = "gthread" if threads > 1 else "sync"

timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)

# Recycling bounds what a slow leak can grow to; the jitter staggers the restarts.
max_requests = _int("GUNICORN_MAX_REQUESTS", 1000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 100)

accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None
errorlog = os.environ.get("GUNICORN_ERROR_LOG", "-")
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Who, what, status, bytes, referer, user agent, and the time taken in microseconds.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)sus'

# The heartbeat file on a tmpfs where there is one (a container's /tmp may be a slow overlay).
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

# Not preloaded: each worker imports Django itself and opens its own database connections after the fork.
preload_app = False
