"""The lifecycle hook registry (pure: no database)."""
from __future__ import annotations

import pytest

from slct_workflows import hooks


def fired(by: str, pid: str = "p") -> hooks.SelectFired:
    return hooks.SelectFired(process_id=pid, goroutine="Main", goroutine_id=1, kind="timer", channel="",
                             method="Main_Late", by=by)


@pytest.fixture
def clean(monkeypatch):
    monkeypatch.setattr(hooks, "_listeners", {})


def test_listeners_get_batches_per_type_and_only_once(clean):
    got: list = []
    listener = got.append
    hooks.subscribe(hooks.SelectFired, listener)
    hooks.subscribe(hooks.SelectFired, listener)  # once per listener
    ended = hooks.ProcessEnded(process_id="p", definition="d", status="done")
    hooks.emit([fired("timer", "a"), ended, fired("close", "b")])
    assert got == [[fired("timer", "a"), fired("close", "b")]]
    hooks.unsubscribe(hooks.SelectFired, listener)
    hooks.emit([fired("timer")])
    assert len(got) == 1


def test_a_cause_filter_means_no_event_is_built_for_other_causes(clean):
    got: list = []
    hooks.subscribe(hooks.SelectFired, got.append, by={hooks.BY_TIMER})
    assert hooks.wanted(hooks.SelectFired, hooks.BY_TIMER)
    assert not hooks.wanted(hooks.SelectFired, hooks.BY_COUNTERPART)  # the hot path builds nothing
    assert not hooks.wanted(hooks.GoroutineBlocked)
    hooks.emit([fired("counterpart"), fired("timer")])
    assert got == [[fired("timer")]]


def test_a_raising_listener_is_skipped_but_a_database_error_reaches_the_engine(clean, caplog):
    got: list = []

    def broken(events):
        raise KeyError("bug in an integration")

    class DatabaseError(Exception):  # matched by name, as Django's and the drivers' are
        pass

    def db_broken(events):
        raise DatabaseError("current transaction is aborted")

    hooks.subscribe(hooks.ProcessEnded, broken)
    hooks.subscribe(hooks.ProcessEnded, got.append)
    event = hooks.ProcessEnded(process_id="p", definition="d", status="failed", error="x")
    hooks.emit([event])
    assert got == [[event]]  # the next listener still ran
    assert "raised; skipped" in caplog.text
    hooks.subscribe(hooks.ProcessEnded, db_broken)
    with pytest.raises(DatabaseError):
        hooks.emit([event])  # the step's transaction is broken: the step must be retried
