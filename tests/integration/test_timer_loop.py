"""The timer loop's rounds, driven by hand: it fires due timers, and an outage is said once."""
from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from slct_workflows import clock

from slct_workflows.runtime import dispatch
from slct_workflows.models import Goroutine
from slct_workflows.testing import NullDispatcher
from slct_workflows.workers.timer_loop import TimerLoop

from . import workflows_for_tests  # noqa: F401  (t-sleeper)

pytestmark = pytest.mark.django_db


@pytest.fixture
def loop(redis_conn):
    loop = TimerLoop(redis_conn, "test-loop", poll=0.05)
    redis_conn.delete(loop.key)
    yield loop
    redis_conn.delete(loop.key)


def test_a_round_fires_due_timers_and_says_how_long_to_wait(runner, loop):
    pid = runner.start("t-sleeper")
    g = Goroutine.objects.get(process_id=pid)
    assert g.status == "blocked"
    assert 0 < loop.tick() <= 0.05  # leads; nothing due: waits one poll at most
    clock.advance(timedelta(hours=2))
    previous = dispatch.use(NullDispatcher())
    try:
        assert loop.tick() == 0.0  # fired: look again at once
    finally:
        dispatch.use(previous)
    assert Goroutine.objects.get(pk=g.pk).status == "runnable"


def test_a_burst_fires_one_wake_job_first_then_in_bulk(runner, settings):
    """Many timers due together: the first transaction fires one wake job's worth, so workers
    start on those steps while the rest fire 100 to a transaction; every one fires once."""
    from slct_workflows.runtime import timers

    settings.SLCT_WAKE_BATCH = 5
    gids = [Goroutine.objects.get(process_id=runner.start("t-sleeper")).id for _ in range(120)]
    clock.advance(timedelta(hours=2))

    class Recording(NullDispatcher):
        def __init__(self):
            self.wakes = []

        def wake(self, ids, at_front=False):
            self.wakes.append(list(ids))

    rec = Recording()
    previous = dispatch.use(rec)
    try:
        fired, done = timers.fire_due()
    finally:
        dispatch.use(previous)
    assert (fired, done) == (120, True)
    assert [len(w) for w in rec.wakes] == [5, 100, 15]
    assert sorted(g for w in rec.wakes for g in w) == sorted(gids)


def test_a_redis_outage_is_logged_once_and_the_loop_comes_back(loop, redis_conn, caplog):
    working = loop.redis
    # Nothing listens on port 1; no retries, so each round fails at once.
    loop.redis = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    with caplog.at_level(logging.INFO, logger="slct_workflows"):
        assert loop.tick() == 1.0
        assert loop.tick() == 1.0
        loop.redis = working
        assert loop.tick() <= 0.05
    messages = [r.getMessage() for r in caplog.records]
    assert sum("round failed" in m for m in messages) == 1, messages
    assert any("running again" in m for m in messages), messages
    assert redis_conn.get(loop.key) == b"test-loop"


def test_a_second_loop_stands_by_while_the_first_leads(loop, redis_conn):
    other = TimerLoop(redis_conn, "test-loop-2", poll=0.05)
    assert loop.lead() is True
    assert other.lead() is False
    assert other.tick() == pytest.approx(1.0)  # stands by, checks the lease again in a second


def test_maintenance_runs_beside_the_rounds_never_inside_them(runner, loop, monkeypatch):
    """A slow maintenance task (a retention batch) must not hold up a timer: rounds never run
    maintenance; the loop's own maintenance thread does, while the worker leads."""
    import threading
    import time

    from slct_workflows import maintenance

    started, release, calls = threading.Event(), threading.Event(), []

    def slow_task():
        calls.append(time.monotonic())
        started.set()
        release.wait(5)

    monkeypatch.setattr(maintenance, "_tasks", {})
    maintenance.task("slow", every=60)(slow_task)

    pid = runner.start("t-sleeper")
    clock.advance(timedelta(hours=2))
    previous = dispatch.use(NullDispatcher())
    try:
        before = time.monotonic()
        assert loop.tick() == 0.0  # the due timer fired in this round ...
        assert time.monotonic() - before < 1.0
        assert calls == []  # ... and the round ran no maintenance
    finally:
        dispatch.use(previous)
    assert Goroutine.objects.get(process_id=pid).status == "runnable"

    assert loop.leading
    thread = threading.Thread(target=loop.maintain, daemon=True)
    thread.start()
    try:
        assert started.wait(5), "the maintenance thread did not run the due task"
        before = time.monotonic()
        assert loop.tick() > 0  # a round while the task is still busy: not blocked by it
        assert time.monotonic() - before < 1.0
    finally:
        release.set()
        loop.stopping.set()
        thread.join(5)
    assert len(calls) == 1 and not thread.is_alive()


@pytest.mark.django_db(transaction=True)
def test_a_small_first_window_of_busy_goroutines_does_not_stop_the_burst(runner, settings):
    """The first firing transaction looks at a small window (one wake job's worth). If every
    goroutine in it is locked by a step elsewhere (skip-locked), the burst goes on with the full
    window instead of reporting nothing left while hundreds are due."""
    from slct_workflows.runtime import timers
    from tests.conftest import postgres_only
    from tests.integration.test_group_commit import held_elsewhere

    postgres_only("SQLite has no row locks to skip")
    settings.SLCT_WAKE_BATCH = 5
    gids = sorted(Goroutine.objects.get(process_id=runner.start("t-sleeper")).id for _ in range(30))
    clock.advance(timedelta(hours=2))
    busy = gids[:10]  # every goroutine of the first window (limit 5 -> 10 due rows looked at)

    def lock_busy():
        list(Goroutine.objects.select_for_update().filter(pk__in=busy))

    previous = dispatch.use(NullDispatcher())
    try:
        with held_elsewhere(lock_busy):
            fired, _ = timers.fire_due()
    finally:
        dispatch.use(previous)
    assert fired == 20
    assert set(Goroutine.objects.filter(pk__in=gids, status="runnable").values_list("id", flat=True)) == set(gids[10:])


def test_the_firing_reads_due_cases_on_the_timer_index_alone_and_locks_only_blocked_goroutines(runner):
    """The bulk firing's due query does not join the goroutines: joined, PostgreSQL's plan hung on
    fresh statistics (right after a burst of timers was set it scanned every blocked goroutine
    once per due case). Whether the goroutine still waits is the locking read's filter: a due
    timer case left on a goroutine that no longer waits is not fired, and the others still are."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from slct_workflows.models import PendingCase
    from slct_workflows.runtime import timers

    gids = [Goroutine.objects.get(process_id=runner.start("t-sleeper")).id for _ in range(3)]
    Goroutine.objects.filter(pk=gids[0]).update(status="paused")  # its case left behind, as if by a bug
    clock.advance(timedelta(hours=2))
    previous = dispatch.use(NullDispatcher())
    try:
        with CaptureQueriesContext(connection) as ctx:
            fired = timers.fire_due_timers()
    finally:
        dispatch.use(previous)
    assert fired == sorted(gids[1:])
    due_reads = [q["sql"] for q in ctx.captured_queries
                 if q["sql"].startswith("SELECT") and "FROM \"slct_workflows_pendingcase\"" in q["sql"]]
    assert due_reads and "JOIN" not in due_reads[0], due_reads[0]
    assert Goroutine.objects.get(pk=gids[0]).status == "paused"
    assert PendingCase.objects.filter(goroutine_id=gids[0]).exists()
