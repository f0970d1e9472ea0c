"""Retrying transactions that lost a deadlock or serialization race (PostgreSQL) or found the
SQLite writer lock busy past its timeout. The whole transaction reruns; nothing was committed."""
from __future__ import annotations

import logging
import random
import time
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)

from slct_workflows import conf

log = logging.getLogger("slct_workflows")
T = TypeVar("T")

RETRYABLE_PGCODES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available


def is_retryable(exc: BaseException) -> bool:
    if not isinstance(exc, DatabaseError):
        return False
    from slct_workflows.runtime.fixed_sql import Conflict, PreparedStatementsLost

    # A conditional write lost a race: read again. Prepared statements gone: prepare again.
    if isinstance(exc, (Conflict, PreparedStatementsLost)):
        return True
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
    "the database system is in recovery mode", "connection reset", "broken pipe", "timeout expired",
    "connection timed out", "could not receive data", "could not send data", "no connection to the server",
    "ssl connection has been closed",
)
# SQLSTATE class 08 (connection exception) and 57P01-57P03 (admin shutdown, crash shutdown,
# cannot connect now): the server or the network, never the statement.
LOST_CONNECTION_PGCODES = {"57P01", "57P02", "57P03"}


def is_connection_lost(exc: BaseException) -> bool:
    """The database went away (restart, failover, a terminated backend, the network): not the
    step's fault."""
    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    cause = exc.__cause__
    pgcode = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if pgcode and (pgcode.startswith("08") or pgcode in LOST_CONNECTION_PGCODES):
        return True
    raw = connection.connection
    if raw is not None and getattr(raw, "closed", False):
        return True
    text = str(exc).lower()
    return any(s in text for s in LOST_CONNECTION_TEXT)


def is_transient(exc: BaseException) -> bool:
    """Retry the whole transaction: a lost race or a lost connection, never a user error."""
    return is_retryable(exc) or is_connection_lost(exc)


def with_db_retries(func: Callable[[], T]) -> T:
    """Run `func` (a whole transaction, or reads outside one), again if it lost a race or its
    connection. A lost connection is closed, so the next attempt connects afresh; the pauses
    between attempts grow to a second (SLCT_DB_RETRIES attempts: about 5 s of database outage
    with the default 8). What still fails raises: for a job, the goroutine stays runnable in the
    database and goes back to the queue (jobs.py) or to the recovery sweep."""
    attempts = conf.db_retries()
    for attempt in range(1, attempts + 1):
        try:
            return func()
        except (DatabaseError, InterfaceError) as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            lost = is_connection_lost(exc)
            release_frames(exc)
            if lost:
                reset_connection()  # the next query opens a fresh one
            log.info("retrying a transaction after %s (attempt %d)", exc, attempt)
            if lost:  # the server is away for a moment: wait for it, a little longer each time
                time.sleep(min(1.0, 0.05 * (2 ** attempt)) * (0.5 + random.random() / 2))
            else:  # a lost race: a short random pause so the racers do not meet again
                time.sleep(min(1.0, 0.01 * (2 ** attempt)) * random.random())
    raise AssertionError("unreachable")


def release_frames(exc: BaseException) -> None:
    """Let go, now and in this thread, of what a caught database error holds on to.

    Django's error wrapper leaves the exception in a reference cycle with the frames it passed
    through, and those frames hold the cursor (for SQLite, the unclosed cursor of a BEGIN that
    found the database locked). The cycle is freed by the garbage collector, in whichever thread
    runs it next. On SQLite that thread then resets the statement under the GIL, waiting for
    the connection's mutex, which the owning thread holds while it waits (GIL released) for the
    write lock; if the collecting thread holds that write lock, both wait until the busy
    timeout (30 s). A worker's main thread and its timer-loop thread did exactly that after the
    database had been locked for a while. Clearing the frames frees the cursor here, at once."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if current.__traceback__ is not None:
            traceback.clear_frames(current.__traceback__)  # frames still running are skipped
        pending += [current.__cause__, current.__context__]


def reset_connection() -> None:
    """Close this thread's default connection unless a transaction (a test's, say) holds it; a
    close that fails (the socket is already gone) is no error."""
    if connection.in_atomic_block:
        return
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is dropped anyway
        connection.connection = None


def fresh_connection() -> None:
    """Drop a dead or expired connection before a job (non-forking workers keep theirs).
    Inside a transaction (a test's, say) there is nothing to refresh."""
    if not connection.in_atomic_block:
        close_old_connections()


@contextmanager
def consistent_read() -> Iterator[None]:
    """Several reads that must agree with each other (a process and its goroutines' waits, as a
    page or an API answer shows them) see one snapshot: on PostgreSQL a REPEATABLE READ
    transaction (read-only, so it never conflicts with a step); SQLite's transaction is a snapshot
    already. Inside an outer transaction the outer one decides (SET TRANSACTION must come first)."""
    if connection.in_atomic_block:
        yield
        return
    if connection.vendor == "sqlite":
        # Not atomic(): its BEGIN IMMEDIATE would take the write lock for a read, and a page
        # polled in a loop would starve the workers. A deferred transaction is a WAL snapshot.
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("COMMIT")
        return
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield
