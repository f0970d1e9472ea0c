"""The recovery sweep cannot die (issue 13): the timer loop's sweep, driven by hand, survives its
own failures (counted, logged once, retried a second later), records every sweep where /readyz
and the metrics read it, sweeps at once with no grace when Redis lost its data; and the scheduled
sweep job schedules its successor even when its sweep fails."""
from __future__ import annotations

import logging

import pytest

from slct_workflows import services

from slct_workflows import heartbeat
from slct_workflows.workers import jobs, sweep, timer_loop
from slct_workflows.workers.timer_loop import TimerLoop


@pytest.fixture
def loop(db, clean_redis):
    loop = TimerLoop(clean_redis, "sweep-test", poll=0, sweep_interval=60)  # timers off: the sweep alone
    yield loop
    clean_redis.delete(loop.key, loop.epoch_key)


class FakeTime:
    """The loop's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(timer_loop, "time", fake)
    return fake


def test_a_failing_sweep_is_counted_logged_once_and_retried(loop, clean_redis, monkeypatch, caplog, clock):
    calls: list = []
    seen: list = []
    real = services.sweep

    def flaky(grace=None):
        calls.append(grace)
        if len(calls) <= 3:
            raise RuntimeError("the database is away")
        return real(grace)

    monkeypatch.setattr(services, "sweep", flaky)
    monkeypatch.setattr(sweep, "sweep_listeners", [lambda ok, report, seconds: seen.append(ok)])
    with caplog.at_level(logging.INFO, logger="slct_workflows"):
        assert loop.tick() == pytest.approx(timer_loop.RETRY_SECONDS)  # fails: tries again in a second
        for _ in range(2):
            clock.now += timer_loop.RETRY_SECONDS
            assert loop.tick() == pytest.approx(timer_loop.RETRY_SECONDS)
        assert heartbeat.last_sweep(clean_redis) is None  # no sweep completed yet
        assert len(calls) == 3
        clock.now += timer_loop.RETRY_SECONDS
        assert loop.tick() == pytest.approx(1.0)  # swept; the lease is checked again in a second
        clock.now += 30
        loop.tick()
        assert len(calls) == 4  # the next one waits for its interval (60 s)...
        clock.now += 30
        loop.tick()
        assert len(calls) == 5  # ...and comes
    assert seen == [False, False, False, True, True]  # three failures told, then two sweeps
    assert heartbeat.last_sweep(clean_redis) is not None
    messages = [r.getMessage() for r in caplog.records]
    assert sum("recovery sweep failed" in m for m in messages) == 1, messages  # once per outage
    assert any("sweep running again" in m for m in messages), messages
    # The first sweep of a Redis without the epoch marker (new, or emptied) takes no grace, until
    # one succeeds; then the usual grace (SLCT_SWEEP_GRACE).
    assert calls == [0.0, 0.0, 0.0, 0.0, None]


def test_redis_losing_its_data_brings_a_sweep_with_no_grace_at_once(loop, clean_redis, monkeypatch, clock):
    calls: list = []
    monkeypatch.setattr(services, "sweep", lambda grace=None: calls.append(grace) or services.SweepReport())
    loop.tick()
    assert calls == [0.0]
    clock.now += 1.0
    loop.tick()
    assert calls == [0.0]  # the next one waits for its interval
    clean_redis.delete(loop.epoch_key, heartbeat.sweep_key())  # "Redis lost its data"
    clock.now += 1.0  # the next lease renewal (every second) notices
    loop.tick()
    assert calls == [0.0, 0.0]
    assert heartbeat.last_sweep(clean_redis) is not None


def test_a_new_leader_sweeps_at_once_with_the_usual_grace(loop, clean_redis, monkeypatch, clock):
    calls: list = []
    monkeypatch.setattr(services, "sweep", lambda grace=None: calls.append(grace) or services.SweepReport())
    clean_redis.set(loop.epoch_key, "someone")  # Redis kept its data
    clean_redis.set(loop.key, "another-worker", px=100)  # another worker leads...
    assert loop.tick() == pytest.approx(1.0) and calls == []
    clean_redis.delete(loop.key)  # ...and dies: its lease runs out
    clock.now += 1.0
    loop.tick()
    assert calls == [None]  # SLCT_SWEEP_GRACE


def test_the_scheduled_sweep_job_schedules_its_successor_even_when_it_fails(db, clean_redis, settings, monkeypatch):
    from django.conf import settings as django_settings

    settings.SLCT_SWEEP_INTERVAL = 15
    scheduled = f"rq:scheduled:{django_settings.SLCT_QUEUE}"

    def broken(redis, grace=None):
        raise RuntimeError("terminating connection due to administrator command")

    monkeypatch.setattr(jobs, "run_sweep", broken)
    with pytest.raises(RuntimeError):
        jobs.sweep()
    jobs_scheduled = [j.decode() for j in clean_redis.zrange(scheduled, 0, -1)]
    assert any(j.startswith("slct-sweep-") for j in jobs_scheduled), jobs_scheduled

    # With a sweep recorded a moment ago (the workers' own), the job does not sweep again.
    clean_redis.delete(scheduled)
    heartbeat.record_sweep(clean_redis)
    assert "skipped" in jobs.sweep()
    assert any(j.startswith(b"slct-sweep-") for j in clean_redis.zrange(scheduled, 0, -1))
