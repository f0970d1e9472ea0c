"""A real worker's timer loop prunes old finished processes by itself (the "retention"
maintenance task of the leading worker), and leaves the rest alone."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from slct_workflows.models import Channel, Event, ProcessInstance, ProcessStatus
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e


def test_the_leading_worker_prunes_old_finished_processes(worker_pool):
    now = timezone.now()
    old = [ProcessInstance(id=f"e2e-old-{i}", definition="counter", status=ProcessStatus.DONE,
                           finished_at=now - timedelta(days=3)) for i in range(60)]
    kept = [ProcessInstance(id="e2e-recent", definition="counter", status=ProcessStatus.DONE,
                            finished_at=now - timedelta(hours=1)),
            ProcessInstance(id="e2e-running", definition="counter", status=ProcessStatus.RUNNING)]
    ProcessInstance.objects.bulk_create(old + kept)
    Event.objects.bulk_create([Event(process_id=p.id, kind="finish", started_at=now, finished_at=now) for p in old])
    Channel.objects.create(name="chan-e2e-old", owner="e2e-old-0")
    # Two days, 10 per batch: the first run does at most four batches, the rest follows within
    # seconds (the backlog interval), not after the hour of SLCT_RETENTION_INTERVAL.
    worker_pool.start(1, scheduler=False, extra_env={"SLCT_RETENTION_DAYS": "2", "SLCT_RETENTION_BATCH": "10",
                                                     "SLCT_RETENTION_INTERVAL": "3600"})
    # 60 processes, 10 a batch, at most 4 batches a run: at least two runs, 5 s apart.
    wait_until(lambda: not ProcessInstance.objects.filter(id__startswith="e2e-old-").exists(), timeout=30,
               message=f"the old processes to be pruned\n{worker_pool.logs()}")
    assert set(ProcessInstance.objects.values_list("id", flat=True)) == {"e2e-recent", "e2e-running"}
    assert not Event.objects.filter(process__id__startswith="e2e-old-").exists() and not Event.objects.exists()
    assert not Channel.objects.filter(pk="chan-e2e-old").exists()
