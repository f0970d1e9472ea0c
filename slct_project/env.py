"""Deployment settings read from the environment: Redis Sentinel for the RQ queue, and the
database options PgBouncer needs (docs/DEPLOY.md).

Pure functions of an environment mapping, so that settings.py calls them with os.environ and the
tests call them with a dict. A bad value raises ImproperlyConfigured naming the variable.
"""
from __future__ import annotations

from typing import Any, Mapping

from django.core.exceptions import ImproperlyConfigured

SENTINEL_PORT = 26379  # Redis Sentinel's default port, for an entry without one
# The same bounds settings._with_redis_timeouts gives a REDIS_URL: an enqueue from a web request
# must not wait forever on a Redis (or a Sentinel) that hangs instead of refusing.
REDIS_SOCKET_TIMEOUT = 10
REDIS_CONNECT_TIMEOUT = 5
SENTINEL_TIMEOUT = 5

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


def env_flag(environ: Mapping[str, str], name: str) -> bool:
    raw = environ.get(name, "").strip().lower()
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {environ[name]!r}")


def parse_sentinels(raw: str, name: str = "REDIS_SENTINELS") -> list[tuple[str, int]]:
    """"host:port,host:port" (IPv6 as [addr]:port; a missing port is 26379) -> [(host, port)]."""
    out: list[tuple[str, int]] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        if item.startswith("["):
            host, sep, rest = item[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ImproperlyConfigured(f"{name}: {item!r} is not [address]:port")
            port_text = rest[1:]
        elif item.count(":") > 1:
            raise ImproperlyConfigured(f"{name}: write an IPv6 address in brackets, [{item}]:port")
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise ImproperlyConfigured(f"{name}: {item!r} has no host")
        port = _port(port_text, item, name) if port_text or item.endswith(":") else SENTINEL_PORT
        out.append((host, port))
    if not out:
        raise ImproperlyConfigured(f"{name} is set but names no sentinel (host:port,host:port)")
    return out


def _port(text: str, item: str, name: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: {item!r} has a port that is not a number") from None
    if not 1 <= port <= 65535:
        raise ImproperlyConfigured(f"{name}: {item!r} has port {port}, outside 1-65535")
    return port


def sentinel_queue(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The RQ_QUEUES entry (django-rq's SENTINELS/MASTER_NAME form) for REDIS_SENTINELS and
    REDIS_SENTINEL_MASTER, or None when neither is set (the queue then uses REDIS_URL)."""
    sentinels_raw = environ.get("REDIS_SENTINELS", "").strip()
    master = environ.get("REDIS_SENTINEL_MASTER", "").strip()
    if not sentinels_raw and not master:
        return None
    if not master:
        raise ImproperlyConfigured("REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER (the monitored master's name) is not")
    if not sentinels_raw:
        raise ImproperlyConfigured("REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS (host:port,host:port) is not")
    if environ.get("REDIS_URL", "").strip():
        # Two answers to "which Redis": refuse rather than pick one silently.
        raise ImproperlyConfigured("REDIS_URL and REDIS_SENTINELS are both set: unset REDIS_URL to use Sentinel")
    db_raw = environ.get("REDIS_SENTINEL_DB", "").strip() or "0"
    if not db_raw.isdigit():
        raise ImproperlyConfigured(f"REDIS_SENTINEL_DB must be a database number >= 0, got {db_raw!r}")
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}
    if environ.get("REDIS_SENTINEL_AUTH_PASSWORD"):
        sentinel_kwargs["password"] = environ["REDIS_SENTINEL_AUTH_PASSWORD"]
    return {
        "SENTINELS": parse_sentinels(sentinels_raw),
        "MASTER_NAME": master,
        "DB": int(db_raw),
        "PASSWORD": environ.get("REDIS_SENTINEL_PASSWORD") or None,
        "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
        "CONNECTION_KWARGS": {"socket_connect_timeout": REDIS_CONNECT_TIMEOUT},
        "SENTINEL_KWARGS": sentinel_kwargs,
    }


def database_pooling(db: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """DATABASE_DISABLE_SERVER_SIDE_CURSORS=1 behind PgBouncer in transaction pooling mode: a
    server-side cursor (QuerySet.iterator) outlives the transaction PgBouncer pins a server
    connection for, so its next FETCH may reach another connection. Returns `db`, changed."""
    if env_flag(environ, "DATABASE_DISABLE_SERVER_SIDE_CURSORS"):
        db["DISABLE_SERVER_SIDE_CURSORS"] = True
    return db
