"""Retrying transactions that lost a deadlock or serialization race (PostgreSQL) or found the
SQLite writer lock busy past its timeout. The whole transaction reruns; nothing was committed."""
from __future__ import annotations

import logging
import random
import time
from typing import Callable, TypeVar

from django.db import DatabaseError, OperationalError, close_old_connections, connection

from . import conf

log = logging.getLogger("slct_workflows")
T = TypeVar("T")

RETRYABLE_PGCODES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available


def is_retryable(exc: BaseException) -> bool:
    if not isinstance(exc, DatabaseError):
        return False
    cause = exc.__cause__
    pgcode = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if pgcode in RETRYABLE_PGCODES:
        return True
    text = str(exc).lower()
    return "database is locked" in text or "deadlock" in text


def is_connection_lost(exc: BaseException) -> bool:
    if not isinstance(exc, (OperationalError, DatabaseError)):
        return False
    text = str(exc).lower()
    return any(s in text for s in ("server closed the connection", "connection", "terminating", "eof"))


def with_db_retries(func: Callable[[], T]) -> T:
    attempts = conf.db_retries()
    for attempt in range(1, attempts + 1):
        try:
            return func()
        except DatabaseError as exc:
            if attempt == attempts or not (is_retryable(exc) or is_connection_lost(exc)):
                raise
            if is_connection_lost(exc) and not connection.in_atomic_block:
                connection.close()
                close_old_connections()
            log.info("retrying a transaction after %s (attempt %d)", exc, attempt)
            time.sleep(min(1.0, 0.01 * (2 ** attempt)) * random.random())
    raise AssertionError("unreachable")


def fresh_connection() -> None:
    """Drop a dead or expired connection before a job (non-forking workers keep theirs).
    Inside a transaction (a test's, say) there is nothing to refresh."""
    if not connection.in_atomic_block:
        close_old_connections()
