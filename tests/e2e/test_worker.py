"""A real `manage.py rqworker` against real Redis runs the seed's examples to completion."""
from __future__ import annotations

import pytest

from slct_workflows import services
from slct_workflows.models import Event, ProcessInstance
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e


def status(pid: str) -> str:
    return ProcessInstance.objects.get(pk=pid).status


def test_counter_runs_on_a_worker_and_times_out_through_the_scheduler(rq_worker):
    pid = services.start_process("counter", {"idle_seconds": 3, "channel": "e2e-counter"}).process.id
    wait_until(lambda: services.get_process(pid).step_count >= 2, message="Main_Start to run")
    results = [services.send("e2e-counter", i, f"k{i}").status for i in range(5)]
    # The first send finds Main blocked; later ones may wait while Main is running a step.
    assert results[0] == "delivered"
    assert set(results) <= {"delivered", "waiting"}
    wait_until(lambda: ProcessInstance.objects.get(pk=pid).state["counter"] == 5, message="5 values counted")
    # After 3 s of silence the timer case fires, scheduled in RQ's scheduler.
    wait_until(lambda: status(pid) == "done", timeout=20, message=f"the idle timer to finish the process; logs:\n{rq_worker.logs()}")
    proc = ProcessInstance.objects.get(pk=pid)
    assert proc.output == {"count": 5}
    assert proc.state["values"] == [0, 1, 2, 3, 4]
    assert Event.objects.filter(process_id=pid, method="Main_Count").count() == 5
    assert Event.objects.filter(process_id=pid, method="Main_Done", case__startswith="timer").count() == 1


def test_pingpong_between_two_processes_over_unbuffered_channels(rq_worker):
    rounds = 20
    a = services.start_process("pingpong", {"role": "ping", "inbox": "pp-a", "outbox": "pp-b", "rounds": rounds})
    b = services.start_process("pingpong", {"role": "pong", "inbox": "pp-b", "outbox": "pp-a", "rounds": rounds})
    wait_until(lambda: status(a.process.id) == "done" and status(b.process.id) == "done", timeout=60,
               message=f"ping-pong to finish; logs:\n{rq_worker.logs()}")
    pa, pb = (ProcessInstance.objects.get(pk=x.process.id) for x in (a, b))
    assert pa.output == {"last": rounds - 1} or pb.output == {"last": rounds - 1}
    received = sorted(
        e.value for e in Event.objects.filter(method="Main_Received", process_id__in=[pa.id, pb.id])
    )
    assert received == list(range(1, rounds)) or received == list(range(0, rounds))
