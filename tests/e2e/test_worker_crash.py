"""A worker killed with SIGKILL in the middle of a step: after restart and sweep the step runs
exactly once (the state counter equals the number of sends, no duplicate history event)."""
from __future__ import annotations

import signal

import pytest

from slct_workflows import services
from slct_workflows.models import Event, ProcessInstance
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e

WORKFLOWS = {"SLCT_WORKFLOW_MODULES": "tests.e2e.workflows"}


def test_sigkill_mid_step_then_sweep_runs_the_step_exactly_once(worker_pool, tmp_path):
    import tests.e2e.workflows  # noqa: F401  (registers e2e-slow-counter here too)

    markers = tmp_path / "markers"
    markers.mkdir()
    sends = 3
    pid = services.start_process(
        "e2e-slow-counter", {"target": sends, "channel": "crash-c", "marker_dir": str(markers), "delay": 3.0}
    ).process.id
    # Sent before any worker runs: they wait as pending sends, so the test process never
    # competes with the sleeping step for SQLite's single writer lock.
    for i in range(sends):
        assert services.send("crash-c", i, f"crash-{i}", create=True).status == "waiting"
    worker = worker_pool.start(1, extra_env=WORKFLOWS)[0]

    # The first Main_Count step starts (marker written), then sleeps inside its transaction.
    wait_until(lambda: any(markers.iterdir()), timeout=20, message=f"a step to begin\n{worker_pool.logs()}")
    worker_pool.kill(worker, signal.SIGKILL)
    assert ProcessInstance.objects.get(pk=pid).state["counter"] == 0  # the killed step committed nothing
    assert not Event.objects.filter(process_id=pid, method="Main_Count").exists()

    worker_pool.start(1, extra_env={**WORKFLOWS})
    report = services.sweep(grace_seconds=0)  # RQ lost the job with the worker: the sweep finds it again
    assert report.runnable == 1
    wait_until(lambda: ProcessInstance.objects.get(pk=pid).status == "done", timeout=60,
               message=f"the process to finish after the restart\n{worker_pool.logs()}")

    proc = ProcessInstance.objects.get(pk=pid)
    assert proc.state["counter"] == sends
    assert proc.output == {"count": sends}
    steps = list(Event.objects.filter(process_id=pid, method="Main_Count").order_by("seq").values_list("value", flat=True))
    assert steps == list(range(sends))  # one history event per value, none twice
    # the killed attempt really started: one more marker for value 0 than committed steps
    assert len(list(markers.glob("step-0-*"))) == 2
