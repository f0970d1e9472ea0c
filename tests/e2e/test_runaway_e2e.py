"""The runaway guard with real workers and the default limit: the README's old counter, its
channel closed, is paused within seconds and stays paused; resumed, it is paused again."""
from __future__ import annotations

import time

import pytest

import tests.integration.test_runaway  # noqa: F401  (registers runaway-counter here too)
from slct_workflows import conf, services
from slct_workflows.models import Event, EventKind, Goroutine, GoroutineStatus
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e

WORKFLOWS = {"SLCT_WORKFLOW_MODULES": "tests.integration.test_runaway"}
WITHIN = 60.0  # seconds; ~1 s on SQLite, ~2.5 s on PostgreSQL on an idle 2-core machine, ~12 s at load 5.7


def main(pid: str) -> Goroutine:
    return Goroutine.objects.get(process_id=pid, name="Main")


def test_the_closed_channel_counter_is_paused_within_seconds(worker_pool):
    worker_pool.start(2, extra_env=WORKFLOWS)
    limit = conf.runaway_steps()
    assert limit == 1000  # the default (this test sets nothing)
    services.create_channel("e2e-runaway")
    pid = services.start_process("runaway-counter", {"channel": "e2e-runaway"}).process.id
    wait_until(lambda: main(pid).status == GoroutineStatus.BLOCKED, timeout=30,
               message=f"the counter to wait; logs:\n{worker_pool.logs()}")

    closed_at = time.monotonic()
    services.close_channel("e2e-runaway")
    wait_until(lambda: main(pid).status == GoroutineStatus.PAUSED, timeout=WITHIN,
               message=f"the guard to pause the runaway counter; logs:\n{worker_pool.logs()}")
    took = time.monotonic() - closed_at
    g = main(pid)
    assert g.hot_steps == limit and "recv e2e-runaway (closed)" in g.paused_reason
    steps = services.get_process(pid).step_count
    print(f"\npaused after {limit} steps in {took:.1f} s ({limit / took:.0f} steps/s)")

    time.sleep(1.0)  # paused: the workers leave it alone
    assert services.get_process(pid).step_count == steps
    assert services.get_process(pid).status == "running"

    services.resume_process(pid)  # enqueued after commit: a worker runs it, the guard stops it again
    wait_until(lambda: Event.objects.filter(process_id=pid, kind=EventKind.PAUSE).count() == 2, timeout=WITHIN,
               message=f"the guard to pause it again; logs:\n{worker_pool.logs()}")
    assert main(pid).status == GoroutineStatus.PAUSED
    services.cancel_process(pid, reason="runaway")
    assert main(pid).status == GoroutineStatus.CANCELLED
