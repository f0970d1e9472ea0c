"""What db.py calls a transient database error (retried, never the step's failure), and what a
retry lets go of. No workers: the rules themselves."""
from __future__ import annotations

import gc
import weakref

import pytest
from django.db import OperationalError, ProgrammingError

from slct_workflows.runtime import db


class _Cause(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _wrapped(message: str, sqlstate: str | None = None) -> OperationalError:
    """A Django OperationalError as the backend raises it (the driver's error as its cause)."""
    exc = OperationalError(message)
    exc.__cause__ = _Cause(message, sqlstate)
    return exc


@pytest.mark.parametrize("message, sqlstate", [
    ("terminating connection due to administrator command", "57P01"),
    ("consuming input failed: server closed the connection unexpectedly", None),
    ('connection failed: connection to server at "127.0.0.1", port 5432 failed: Connection refused', None),
    ("connection failed: timeout expired", None),
    ("the database system is starting up", "57P03"),
    ("SSL SYSCALL error: EOF detected", "08006"),  # class 08: a connection exception
    ("database is locked", None),  # SQLite's writer lock past its busy timeout
    ("deadlock detected", "40P01"),
])
def test_outages_and_lost_races_are_transient(message, sqlstate):
    assert db.is_transient(_wrapped(message, sqlstate))


@pytest.mark.parametrize("exc", [
    _wrapped('connection failed: FATAL: password authentication failed for user "slct"', "28P01"),
    ProgrammingError("relation \"slct_workflows_goroutine\" does not exist"),
    ValueError("a user's bug"),
])
def test_configuration_and_program_errors_are_not(exc):
    assert not db.is_transient(exc)


def test_a_retry_frees_what_the_failed_attempt_held_in_this_thread(settings):
    """A failed attempt's exception sits in a reference cycle with its frames (Django's error
    wrapper makes one), and the frames hold its cursor. with_db_retries releases the frames at
    once, so the cursor is not left to the garbage collector of whatever thread runs next
    (on SQLite that collector could block every thread of the worker: see db.release_frames)."""
    settings.SLCT_DB_RETRIES = 3

    class Cursor:  # stands for the cursor of the failed BEGIN
        pass

    refs: list[weakref.ref] = []

    def attempt():
        cursor = Cursor()
        refs.append(weakref.ref(cursor))
        if len(refs) == 1:
            try:
                raise _wrapped("database is locked")
            except OperationalError as exc:
                held = exc  # noqa: F841 - the cycle: exc -> traceback -> this frame -> held -> exc
                raise
        return "done"

    gc.disable()
    try:
        assert db.with_db_retries(attempt) == "done"
        assert refs[0]() is None, "the failed attempt's cursor is still alive, waiting for the collector"
    finally:
        gc.enable()
