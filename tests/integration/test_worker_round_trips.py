"""The project's worker sends RQ's bookkeeping in fewer Redis round trips (workers/worker.py,
"fewer round trips per job") and still keeps what the round trips were for: a fresh heartbeat,
the worker's key alive, its state true, `rq suspend` honoured. Real Redis, a real worker in this
process on no-op jobs; round trips counted where redis-py writes to the socket."""
from __future__ import annotations

import time
from contextlib import contextmanager

import pytest
import rq.suspension
from redis.connection import Connection
from rq import Queue
from rq.exceptions import StopRequested
from rq.job import Job
from rq.suspension import resume, suspend
from rq.utils import utcparse
from rq.worker import WorkerStatus

from slct_workflows import conf, definitions
from slct_workflows.workers import worker as worker_module
from slct_workflows.workers.worker import Worker

# RQ 3.0's own SimpleWorker spends 27 round trips on such a job (docs/PERFORMANCE.md).
MOST_PER_JOB = 16


PAUSE = 3600.0  # HEARTBEAT_MIN_SECONDS here: no beat or check falls due by the clock mid-test


@pytest.fixture
def queue(clean_redis, monkeypatch):
    # No timer loop (it has its own Redis client and a database connection), and the worker's
    # bootstrap must not rewrite this test session's database settings.
    monkeypatch.setenv("SLCT_TIMER_POLL_SECONDS", "0")
    monkeypatch.setenv("SLCT_SWEEP_INTERVAL", "0")
    conf.reset()
    monkeypatch.setattr(worker_module, "persistent_db_connections", lambda: None)
    monkeypatch.setattr(worker_module, "HEARTBEAT_MIN_SECONDS", PAUSE)
    monkeypatch.setattr(definitions, "in_worker", definitions.in_worker)
    monkeypatch.setattr(Worker, "_install_signal_handlers", lambda self: None)  # pytest keeps its own
    from django.conf import settings

    # `rq suspend` is one key for the whole Redis: this run's own, so that suspending here stops
    # no other run's workers (nor lifts an operator's suspension).
    monkeypatch.setattr(rq.suspension, "WORKERS_SUSPENDED", f"rq:suspended:{settings.SLCT_QUEUE}")
    q = Queue(f"{settings.SLCT_QUEUE}-round-trips", connection=clean_redis)
    yield q
    for key in clean_redis.scan_iter(match=f"*{q.name}*"):
        clean_redis.delete(key)
    resume(clean_redis)
    conf.reset()


@contextmanager
def counting_round_trips():
    sent = [0]
    original = Connection.send_packed_command

    def counted(self, command, check_health=True):
        sent[0] += 1
        return original(self, command, check_health)

    Connection.send_packed_command = counted
    try:
        yield sent
    finally:
        Connection.send_packed_command = original


def _burst(q: Queue, jobs: int) -> int:
    ids = [q.enqueue("time.time", result_ttl=0).id for _ in range(jobs)]
    w = Worker([q], connection=q.connection)
    with counting_round_trips() as sent:
        w.work(burst=True, logging_level="WARNING")
    assert q.count == 0
    # result_ttl=0: every job's hash deleted, as RQ's own worker does
    assert not any(q.connection.exists(Job.key_for(i)) for i in ids)
    return sent[0]


def test_a_job_costs_at_most_16_round_trips_and_leaves_nothing_behind(queue, clean_redis):
    ten, thirty = _burst(queue, 10), _burst(queue, 30)
    per_job = (thirty - ten) / 20  # the worker's start and stop cancel out
    assert per_job <= MOST_PER_JOB, per_job
    assert clean_redis.zcard(queue.started_job_registry.key) == 0


def _worker(q: Queue) -> Worker:
    w = Worker([q], connection=q.connection)
    w.register_birth()
    return w


def test_a_heartbeat_is_one_round_trip_and_keeps_the_key_and_last_heartbeat(queue, clean_redis):
    w = _worker(queue)
    w._beat_at = float("-inf")
    before = time.time()
    with counting_round_trips() as sent:
        w.heartbeat()
    assert sent[0] == 1
    beat = utcparse(clean_redis.hget(w.key, "last_heartbeat").decode()).timestamp()
    assert beat >= before - 1
    assert clean_redis.ttl(w.key) > w.worker_ttl  # worker_ttl + 60
    w.register_death()


def test_a_heartbeat_right_after_another_is_not_sent_and_one_after_the_pause_is(queue, clean_redis):
    w = _worker(queue)
    w.heartbeat()
    with counting_round_trips() as sent:
        w.heartbeat()
        w.heartbeat()
    assert sent[0] == 0
    # A beat inside one of RQ's pipelines counts too: it went out with the pipeline.
    w._beat_at = float("-inf")
    with clean_redis.pipeline() as pipe:
        w.heartbeat(pipeline=pipe)
        pipe.execute()
    with counting_round_trips() as sent:
        w.heartbeat()
    assert sent[0] == 0
    w._beat_at = time.monotonic() - PAUSE - 0.01
    clean_redis.hdel(w.key, "last_heartbeat")
    with counting_round_trips() as sent:
        w.heartbeat()
    assert sent[0] == 1
    assert clean_redis.hget(w.key, "last_heartbeat") is not None
    w.register_death()


def test_the_same_state_is_written_once_and_again_after_an_outage(queue, clean_redis):
    w = _worker(queue)
    w.set_state(WorkerStatus.IDLE)
    with counting_round_trips() as sent:
        w.set_state(WorkerStatus.IDLE)
    assert sent[0] == 0
    # A state written in a caller's pipeline (RQ's prepare_execution writes busy this way).
    with clean_redis.pipeline() as pipe:
        w.set_state(WorkerStatus.BUSY, pipeline=pipe)
        pipe.execute()
    assert clean_redis.hget(w.key, "state") == b"busy"
    with counting_round_trips() as sent:
        w.set_state(WorkerStatus.IDLE)
    assert sent[0] == 1 and clean_redis.hget(w.key, "state") == b"idle"
    # Redis may come back empty after an outage: the state is written again.
    w._redis_down("test", ConnectionError("gone"))
    clean_redis.hdel(w.key, "state")
    w.set_state(WorkerStatus.IDLE)
    assert clean_redis.hget(w.key, "state") == b"idle"
    w._redis_down_since = None
    w.register_death()


def test_rq_suspend_is_honoured_within_the_pause(queue, clean_redis):
    w = _worker(queue)
    w.check_for_suspension(burst=True)  # not suspended
    suspend(clean_redis)
    w.check_for_suspension(burst=True)  # checked a moment ago: not asked again yet
    w._suspension_check_at = time.monotonic() - 0.01
    with pytest.raises(StopRequested):
        w.check_for_suspension(burst=True)
    w.register_death()


def test_a_suspended_queue_stops_a_burst_worker_before_its_first_job(queue, clean_redis):
    queue.enqueue("time.time", result_ttl=0)
    suspend(clean_redis)
    Worker([queue], connection=clean_redis).work(burst=True, logging_level="WARNING")
    assert queue.count == 1


def test_a_worker_that_lost_its_registration_without_an_outage_registers_again(queue, clean_redis):
    """A Redis restart short enough for redis-py's retries to hide it: this worker saw no outage,
    but its key and its place in the worker registry are gone. The next suspension check (once
    a second) puts them back, so /readyz counts it again."""
    from rq.worker_registration import get_keys, unregister

    w = _worker(queue)
    assert w.key in get_keys(queue=queue)
    clean_redis.delete(w.key)
    unregister(w)
    assert w.key not in get_keys(queue=queue)
    w._suspension_check_at = 0.0
    w.check_for_suspension(burst=False)
    assert clean_redis.hexists(w.key, "birth")
    assert w.key in get_keys(queue=queue)
    w.register_death()
