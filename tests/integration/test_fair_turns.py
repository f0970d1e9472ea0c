"""A chain of goroutines that keep waking each other gets a turn, not the workers: a job whose
budget is spent hands what is left to the back of the queue (workers/jobs.py `_run`), so every
job behind it runs too. One real worker process, real Redis."""
from __future__ import annotations

import pytest
from django.db import transaction

from slct_workflows import services
from slct_workflows.models import Event, ProcessInstance
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _pair(tag: str, rounds: int) -> list[str]:
    a, b = f"fair-{tag}-a", f"fair-{tag}-b"
    return [
        services.start_process("pingpong", {"role": "pong", "inbox": a, "outbox": b, "rounds": rounds}).process.id,
        services.start_process("pingpong", {"role": "ping", "inbox": b, "outbox": a, "rounds": rounds}).process.id,
    ]


def test_endless_ping_pong_pairs_do_not_starve_the_jobs_queued_behind_them(rq_worker):
    # Each endless pair alone would keep a worker busy for ever: its two goroutines wake each
    # other at every step. Handed back to the front of the queue at the end of each job (as
    # before), the first pair took every turn and nothing queued after it ever ran.
    with transaction.atomic():
        endless = [pid for i in range(3) for pid in _pair(f"endless-{i}", 10**6)]
    with transaction.atomic():
        short = _pair("short", 4)
    wait_until(lambda: ProcessInstance.objects.filter(pk__in=short, status="done").count() == 2, timeout=60,
               message=rq_worker.logs())
    ran = set(Event.objects.filter(process_id__in=endless, kind="step").values_list("process_id", flat=True))
    assert ran == set(endless)  # every endless pair had turns too
    with transaction.atomic():
        for pid in endless:
            services.cancel_process(pid)
