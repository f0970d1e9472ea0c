"""GET /api/processes/{id}/ is one snapshot: the state a step saved and the waits it declared are
read together, while real workers keep stepping the process (issue: 5-15 % of reads mismatched)."""
from __future__ import annotations

import time

import pytest
from rest_framework.test import APIClient

from slct_workflows import services
from slct_workflows.models import ProcessInstance

pytestmark = pytest.mark.e2e

WORKFLOWS = {"SLCT_WORKFLOW_MODULES": "tests.e2e.workflows"}


def test_process_detail_agrees_with_its_goroutines_while_steps_run(worker_pool, django_user_model):
    import tests.e2e.workflows  # noqa: F401  (registers e2e-hopper here too)

    worker_pool.start(2, extra_env=WORKFLOWS)
    user = django_user_model.objects.create_superuser("snap", "snap@example.com", "pw")
    client = APIClient()
    client.force_authenticate(user)
    pid = services.start_process("e2e-hopper", {"hops": 100_000}).process.id
    reads = mismatches = hop = 0
    deadline = time.monotonic() + 40
    # Until enough reads caught it blocked across enough steps (workers start slowly on a busy machine).
    while (reads < 150 or hop < 60) and time.monotonic() < deadline:
        body = client.get(f"/api/processes/{pid}/").json()
        hop = body["state"]["hop"]
        assert body["status"] == "running", body
        main = next(g for g in body["goroutines"] if g["name"] == "Main")
        if main["status"] == "blocked":
            reads += 1
            waits = [c["channel"] for c in main["pending_cases"] if c["operation"] == "recv"]
            if waits != [body["state"]["waiting_on"]]:
                mismatches += 1
        time.sleep(0.005)
    hops = ProcessInstance.objects.get(pk=pid).state["hop"]
    services.cancel_process(pid, reason="enough reads")
    print(f"snapshot reads while blocked: {reads} over {hops} hops, mismatches: {mismatches}")
    assert hops >= 20, f"the process barely moved ({hops} hops); logs:\n{worker_pool.logs()}"
    assert reads >= 20, "too few reads caught the process blocked to say anything"
    assert mismatches == 0
