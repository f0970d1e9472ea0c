"""Work whose RQ job was lost is found again by the periodic sweep job and the sweep command."""
from __future__ import annotations

import pytest
from django.core.management import call_command

from slct_workflows import services

from slct_workflows.runtime import dispatch

from slct_workflows.workers import jobs
from slct_workflows.models import ProcessInstance
from slct_workflows.testing import NullDispatcher
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e


def _start_without_enqueue(definition: str, input) -> str:
    """As if Redis lost the job: the process is runnable in the database, no job exists."""
    previous = dispatch.use(NullDispatcher())
    try:
        return services.start_process(definition, input).process.id
    finally:
        dispatch.use(previous)


def test_the_periodic_sweep_job_recovers_a_lost_wake_up(worker_pool, settings):
    settings.SLCT_SWEEP_INTERVAL = 1  # the first periodic sweep, seeded from here, runs in 1 s

    pid = _start_without_enqueue("counter", {"idle_seconds": 1, "channel": "lost-1"})
    worker_pool.start(1, extra_env={"SLCT_SWEEP_INTERVAL": "1", "SLCT_SWEEP_GRACE": "0"})
    call_command("slct_sweep", "--schedule", "--grace", "3600")  # seeds the periodic job, sweeps nothing now
    # Nothing enqueued the process: only the periodic sweep (every 1 s in the worker) can find it,
    # and then its 1 s idle timer fires through the scheduler or the next sweep.
    wait_until(lambda: ProcessInstance.objects.get(pk=pid).status == "done", timeout=15,
               message=f"the periodic sweep to run the process\n{worker_pool.logs()}")
    assert ProcessInstance.objects.get(pk=pid).output == {"count": 0}


def test_the_sweep_fires_an_overdue_timer_whose_job_was_lost(worker_pool):
    previous = dispatch.use(NullDispatcher())
    try:
        pid = services.start_process("counter", {"idle_seconds": 0.2, "channel": "lost-2"}).process.id

        jobs.wake(ProcessInstance.objects.get(pk=pid).goroutines.get().id)  # Main_Start blocks; timer not scheduled
    finally:
        dispatch.use(previous)
    assert ProcessInstance.objects.get(pk=pid).status == "running"
    worker_pool.start(1, extra_env={"SLCT_TIMER_POLL_SECONDS": "0"})  # the fallback path: no timer loop
    import time

    time.sleep(0.3)
    report = services.sweep(grace_seconds=0)
    assert report.timers == 1
    wait_until(lambda: ProcessInstance.objects.get(pk=pid).status == "done", timeout=20,
               message=f"the swept timer to fire\n{worker_pool.logs()}")
    assert services.sweep(grace_seconds=0).timers == 0  # idempotent: nothing left to do
