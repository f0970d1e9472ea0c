"""A real worker's timer loop starts scheduled processes by itself (the "schedules" maintenance
task of the leading worker), one per slot, and they run to done."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from slct_workflows import schedules
from slct_workflows.models import ProcessInstance
from slct_workflows.models import Schedule as ScheduleRow
from slct_workflows.slots import SLOT_FORMAT
from tests.conftest import wait_until

pytestmark = pytest.mark.e2e


def _slot(pid: str) -> datetime:
    return datetime.strptime(pid.rsplit("-", 1)[1], SLOT_FORMAT).replace(tzinfo=timezone.utc)


def test_the_leading_worker_starts_an_interval_schedule_and_its_processes_finish(worker_pool):
    row = ScheduleRow(name="e2e-every-second", definition="counter", interval_seconds=1,
                      input={"idle_seconds": 0.1, "channel": "e2e-sched"})
    schedules.set_next_run(row)
    row.save()
    worker_pool.start(1, scheduler=False)

    runs = ProcessInstance.objects.filter(id__startswith="e2e-every-second-")
    wait_until(lambda: runs.filter(status="done").count() >= 2, timeout=30,
               message=f"two scheduled runs to finish\n{worker_pool.logs()}")
    ScheduleRow.objects.filter(pk=row.pk).update(enabled=False)

    done = runs.filter(status="done").order_by("id").first()
    assert done.output == {"count": 0}
    slots = [_slot(pid) for pid in runs.values_list("id", flat=True)]
    assert len(set(slots)) == len(slots)
    assert all(s.microsecond == 0 for s in slots)  # whole-second slots
    # Started when its slot came, not long after (the tick looks every SLCT_SCHEDULE_POLL = 1 s).
    lateness = (done.created_at - _slot(done.id)).total_seconds()
    assert 0 <= lateness < 5, lateness
    row.refresh_from_db()
    assert row.last_slot is not None and row.last_process_id.startswith("e2e-every-second-")
    assert row.last_error == ""
