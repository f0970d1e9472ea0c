"""Retrying transactions that lost a deadlock or serialization race (PostgreSQL) or found the
SQLite writer lock busy past its timeout. The whole transaction reruns; nothing was committed."""
from __future__ import annotations

import logging
import random
import time
from typing import Callable, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection

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


LOST_CONNECTION_TEXT = (
    "server closed the connection", "terminating connection", "connection already closed",
    "consuming input failed", "connection is lost", "connection refused", "could not connect",
    "connection is closed", "the database system is shutting down", "the database system is starting up",
)


def is_connection_lost(exc: BaseException) -> bool:
    """The database went away (restart, failover, a terminated backend): not the step's fault."""
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    raw = connection.connection
    if raw is not None and getattr(raw, "closed", False):
        return True
    text = str(exc).lower()
    return any(s in text for s in LOST_CONNECTION_TEXT)


def is_transient(exc: BaseException) -> bool:
    """Retry the whole transaction: a lost race or a lost connection, never a user error."""
    return is_retryable(exc) or is_connection_lost(exc)


def with_db_retries(func: Callable[[], T]) -> T:
    attempts = conf.db_retries()
    for attempt in range(1, attempts + 1):
        try:
            return func()
        except (DatabaseError, InterfaceError) as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            if is_connection_lost(exc) and not connection.in_atomic_block:
                connection.close()  # the next query opens a fresh one
            log.info("retrying a transaction after %s (attempt %d)", exc, attempt)
            time.sleep(min(1.0, 0.01 * (2 ** attempt)) * random.random())
    raise AssertionError("unreachable")


def fresh_connection() -> None:
    """Drop a dead or expired connection before a job (non-forking workers keep theirs).
    Inside a transaction (a test's, say) there is nothing to refresh."""
    if not connection.in_atomic_block:
        close_old_connections()
