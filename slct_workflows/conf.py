"""Engine settings, read in one place. Each comes from Django settings, else the environment.

The settings a step reads (a dozen per step) are read once per process (`_per_process`): looking
each one up in Django's settings and the environment at every step cost about 2% of a step's
instructions (callgrind). A changed Django setting (override_settings, pytest-django's
`settings`) clears them; after changing the environment in a running process, call `reset()`.
"""
from __future__ import annotations

import functools
import os
from typing import Any, Callable, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

F = TypeVar("F", bound=Callable[..., Any])

_values: dict[tuple, Any] = {}


def _per_process(func: F) -> F:
    """Read the setting on first use, then answer from memory (until `reset()`). A bad value is
    not remembered: it raises ImproperlyConfigured at every read."""

    @functools.wraps(func)
    def read(*args: Any) -> Any:
        key = (func, args)
        try:
            return _values[key]
        except KeyError:
            value = _values[key] = func(*args)
            return value

    return read  # type: ignore[return-value]


def reset(**_: Any) -> None:
    """Forget the settings read so far (a setting or the environment changed)."""
    _values.clear()


setting_changed.connect(reset, dispatch_uid="slct_workflows.conf.reset")


def _raw(name: str, default: Any) -> Any:
    if hasattr(settings, name):
        return getattr(settings, name)
    return os.environ.get(name, default)


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = _raw(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = _raw(name, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _bool(name: str, default: str) -> bool:
    raw = _raw(name, default)
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ImproperlyConfigured(f"{name} must be on or off (1/0, true/false, yes/no), got {raw!r}")


@_per_process
def queue_name() -> str:
    return str(_raw("SLCT_QUEUE", "slct"))


@_per_process
def max_attempts() -> int:
    """How many times a raising step runs before its goroutine and process are marked failed."""
    return _int("SLCT_MAX_ATTEMPTS", 3, minimum=1)


@_per_process
def retry_backoff() -> float:
    """Seconds before the first retry of a failed step; doubles each attempt."""
    return _float("SLCT_RETRY_BACKOFF", 1.0)


def sweep_grace() -> float:
    """A runnable goroutine untouched this long (seconds) is re-enqueued by the sweep."""
    return _float("SLCT_SWEEP_GRACE", 5.0)


def sweep_interval() -> float:
    """Seconds between periodic sweeps (0 disables the self-rescheduling sweep job)."""
    return _float("SLCT_SWEEP_INTERVAL", 15.0)


@_per_process
def db_retries() -> int:
    """Attempts for a step that hits a deadlock or serialization failure."""
    return _int("SLCT_DB_RETRIES", 8, minimum=1)


@_per_process
def max_value_bytes() -> int:
    """Largest JSON-encoded channel value, input or state accepted."""
    return _int("SLCT_MAX_VALUE_BYTES", 256 * 1024, minimum=64)


@_per_process
def steps_per_job() -> int:
    """How many consecutive steps of one goroutine a worker runs in one job before re-enqueueing."""
    return _int("SLCT_STEPS_PER_JOB", 20, minimum=1)


@_per_process
def job_seconds() -> float:
    """How long one wake job may keep running steps before handing the rest back to the queue."""
    return _float("SLCT_JOB_SECONDS", 0.1)


@_per_process
def group_steps() -> int:
    """Group commit (runtime/group.py): at most this many steps of a job's runnable goroutines
    share one transaction and its COMMIT. 1 = one step per transaction."""
    return _int("SLCT_GROUP_STEPS", 16, minimum=1)


@_per_process
def group_ms() -> float:
    """Group commit: no step starts in a group after it has run this many milliseconds once one
    of its steps has woken a goroutine (that goroutine waits for the group's COMMIT; this bounds
    the wait); four times as long while none has."""
    return _float("SLCT_GROUP_MS", 5.0)


@_per_process
def group_lock_wait_ms() -> int:
    """Group commit on PostgreSQL: how long a step after the group's first may wait for a lock
    (lock_timeout) before it is left for a later transaction. Kept far below the server's
    deadlock_timeout, so a group holding locks never sits in a lock cycle."""
    return _int("SLCT_GROUP_LOCK_WAIT_MS", 2, minimum=1)


def workflow_modules() -> list[str]:
    raw = _raw("SLCT_WORKFLOW_MODULES", "")
    if isinstance(raw, str):
        return [m.strip() for m in raw.split(",") if m.strip()]  # "a, b" is ["a", "b"]
    if isinstance(raw, (list, tuple)):
        return list(raw)
    raise ImproperlyConfigured("SLCT_WORKFLOW_MODULES must be a list of module paths")


def max_request_bytes() -> int:
    """Largest request body (bytes) the REST API accepts; larger ones get 413."""
    return _int("SLCT_MAX_REQUEST_BYTES", 1024 * 1024, minimum=1024)


def timer_poll_seconds() -> float:
    """How often the workers' timer loop looks for due timers (0 turns the loop off; RQ's
    scheduler, whole seconds, then fires them alone)."""
    return _float("SLCT_TIMER_POLL_SECONDS", 0.05)


@_per_process
def wake_batch() -> int:
    """Goroutine ids one wake job carries (a thousand timers due together: fifty jobs, not a thousand)."""
    return _int("SLCT_WAKE_BATCH", 20, minimum=1)


# -- health and metrics (slct_workflows.read.health, slct_workflows.read.metrics; docs/OPERATIONS.md) -----

def metrics_token() -> str:
    """SLCT_METRICS_TOKEN: the Bearer token a scraper presents to /metrics ("" = no token)."""
    raw = _raw("SLCT_METRICS_TOKEN", "")
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise ImproperlyConfigured("SLCT_METRICS_TOKEN must be a string")
    token = raw.strip()
    if token and (len(token) < 16 or any(c.isspace() for c in token) or not token.isprintable()):
        raise ImproperlyConfigured(
            "SLCT_METRICS_TOKEN must be at least 16 printable characters without spaces (or empty to turn it off)"
        )
    return token


def metrics_allow() -> list:
    """SLCT_METRICS_ALLOW: the addresses (IPs or CIDRs, comma-separated, or a list in settings)
    that may scrape /metrics, matched against the connecting address ([] = no allow list)."""
    import ipaddress

    raw = _raw("SLCT_METRICS_ALLOW", "")
    if raw is None:
        return []
    if isinstance(raw, str):
        items = raw.split(",")
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        raise ImproperlyConfigured("SLCT_METRICS_ALLOW must be a comma-separated string or a list of IPs/CIDRs")
    networks = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ImproperlyConfigured(f"SLCT_METRICS_ALLOW: {text!r} is not an IP address or CIDR") from None
    return networks


def metrics_multiproc_dir() -> str:
    """PROMETHEUS_MULTIPROC_DIR (environment only: prometheus_client reads it when imported): the
    directory the web server and the workers of one host share for counters and histograms
    ("" = single-process metrics)."""
    raw = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if raw and not os.path.isdir(raw):
        raise ImproperlyConfigured(f"PROMETHEUS_MULTIPROC_DIR={raw!r} is not a directory")
    return raw


def ready_worker_seconds() -> float:
    """/readyz counts a worker as live if its RQ heartbeat is at most this old (seconds). The
    project's worker (slct_workflows.worker.Worker) beats every 10 s when idle and after every
    job; a stock RQ worker only every worker_ttl - 15 s (405 s): set 480 for those."""
    return _float("SLCT_READY_WORKER_SECONDS", 60.0, minimum=1.0)


def health_timeout() -> float:
    """Seconds /readyz waits for Redis before calling it down."""
    return _float("SLCT_HEALTH_TIMEOUT", 2.0, minimum=0.1)


@_per_process
def runaway_steps() -> int:
    """The runaway guard (docs/OPERATIONS.md "Runaway goroutines"): a goroutine whose select fires
    at once on its own this many times in a row (a default, a due timer, a closed channel, its own
    buffered value; never a value or a waiting party from elsewhere) is paused until an operator
    resumes it. 0 turns the guard off."""
    return _int("SLCT_RUNAWAY_STEPS", 1000, minimum=0)


@_per_process
def runaway_rate() -> float:
    """Steps per second: when set, a goroutine at the runaway limit is paused only if its last
    SLCT_RUNAWAY_STEPS steps ran faster than this (slower ones start a new count). 0 (the
    default): the count alone decides."""
    return _float("SLCT_RUNAWAY_RATE", 0.0)


# -- workers riding out outages (slct_workflows.worker) ------------------------------------------

def worker_conn_max_age() -> int:
    """Seconds an RQ worker keeps a database connection (the web default is 0: one per request);
    set on the worker's connections at bootstrap, with health checks before reuse."""
    return _int("SLCT_WORKER_CONN_MAX_AGE", 600)


def worker_redis_backoff_max() -> float:
    """Longest pause (seconds) between a worker's attempts to reach Redis during an outage; the
    pauses double from half a second up to this (redis-py's own retries add up to a few seconds
    per attempt)."""
    return _float("SLCT_WORKER_REDIS_BACKOFF_MAX", 2.0, minimum=0.1)


# -- retention (slct_workflows.retention) ---------------------------------------------------------

def retention_days() -> float:
    """SLCT_RETENTION_DAYS: finished processes (done, cancelled, failed) older than this many days
    are deleted with their history (docs/OPERATIONS.md "Retention"). 0 keeps everything."""
    import math

    value = _float("SLCT_RETENTION_DAYS", 30.0)
    if not math.isfinite(value) or value > 365 * 1000:
        raise ImproperlyConfigured(f"SLCT_RETENTION_DAYS must be a number of days from 0 to 365000, got {value}")
    return value


def retention_batch() -> int:
    """Processes deleted per transaction by retention (a batch locks only its own rows)."""
    return _int("SLCT_RETENTION_BATCH", 500, minimum=1)


def retention_interval() -> float:
    """Seconds between the leading worker's retention runs (a few batches each; 0: off)."""
    return _float("SLCT_RETENTION_INTERVAL", 3600.0)


# -- schedules (slct_workflows.schedules) --------------------------------------------------------

def schedule_poll() -> float:
    """Seconds between the leading worker's looks at the schedules (0: no scheduled starts)."""
    return _float("SLCT_SCHEDULE_POLL", 1.0)


def schedule_grace() -> float:
    """A slot found at most this many seconds late still starts under catchup="skip" (a slot
    missed by more, during a downtime, is skipped)."""
    return _float("SLCT_SCHEDULE_GRACE", 60.0)


def prepared_statements() -> bool:
    """PostgreSQL: the step's fixed statements as prepared statements (parsed and planned once per
    connection). Off behind a pooler that cannot keep them: PgBouncer in transaction mode before
    1.21, or without max_prepared_statements. Defaults to off where server-side cursors are off
    (DATABASE_DISABLE_SERVER_SIDE_CURSORS, the PgBouncer setting), on elsewhere."""
    from django.db import connection

    return _prepared_statements(bool(connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")))


@_per_process
def _prepared_statements(pooled: bool) -> bool:
    return _bool("SLCT_PREPARED_STATEMENTS", "0" if pooled else "1")
