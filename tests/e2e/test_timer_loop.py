"""The workers' timer loop: timers fire from the database within a fraction of a second, with
no RQ scheduler and no sweep, and one worker leads the loop at a time."""
from __future__ import annotations

import os
import signal
from datetime import datetime

import pytest

from slct_workflows import services
from slct_workflows.models import Event, ProcessInstance
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e


def _lease_key() -> str:
    from django.conf import settings

    return f"slct:timer-loop:{settings.SLCT_QUEUE}"


def _timer_lateness(pid: str) -> float:
    step = Event.objects.get(process_id=pid, method="Main_Done")
    due = datetime.fromisoformat(step.case.split(" ", 1)[1])
    return (step.finished_at - due).total_seconds()


def test_a_timer_fires_without_rq_scheduler_or_sweep(worker_pool):
    worker_pool.start(1, scheduler=False)
    pid = services.start_process("counter", {"idle_seconds": 0.3, "channel": "loop-1"}).process.id
    # Without the loop nothing could fire this timer: no scheduler runs, no sweep.
    wait_until(lambda: ProcessInstance.objects.get(pk=pid).status == "done", timeout=30,
               message=f"the timer loop to fire the idle timer\n{worker_pool.logs()}")
    assert ProcessInstance.objects.get(pk=pid).output == {"count": 0}
    assert 0 <= _timer_lateness(pid) < 5


def test_one_worker_leads_the_loop_and_another_takes_over_when_it_stops(worker_pool, redis_conn):
    first = worker_pool.start(1, scheduler=False)[0]
    wait_until(lambda: redis_conn.get(_lease_key()) is not None, timeout=30, message=worker_pool.logs())
    leader = redis_conn.get(_lease_key())
    worker_pool.start(1, scheduler=False)
    pid = services.start_process("counter", {"idle_seconds": 0.2, "channel": "loop-2"}).process.id
    wait_until(lambda: ProcessInstance.objects.get(pk=pid).status == "done", timeout=30, message=worker_pool.logs())
    assert redis_conn.get(_lease_key()) == leader  # the second worker stood by

    os.killpg(first.pid, signal.SIGTERM)  # a warm shutdown hands the lease back at once
    first.wait(timeout=30)
    wait_until(lambda: redis_conn.get(_lease_key()) not in (None, leader), timeout=30,
               message=f"the second worker to take the lease\n{worker_pool.logs()}")
    pid = services.start_process("counter", {"idle_seconds": 0.2, "channel": "loop-3"}).process.id
    wait_until(lambda: ProcessInstance.objects.get(pk=pid).status == "done", timeout=30, message=worker_pool.logs())
