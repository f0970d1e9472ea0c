"""The schedules tick on the real database with the controllable clock: each slot starts its
process exactly once (twice-run and concurrent ticks), missed slots follow the catchup policy, a
disabled schedule starts nothing, and code-declared schedules are written into the table."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from slct_workflows import Schedule, register, schedules
from slct_workflows.models import ProcessInstance
from slct_workflows.models import Schedule as ScheduleRow
from slct_workflows.testing import WorkflowRunner, isolated_registry
from tests.conftest import run_concurrently

T0 = datetime(2026, 5, 4, 8, 59, 30, tzinfo=timezone.utc)  # a Monday


def _define(schedule=None, name: str = "sched-report") -> None:
    @register(name, schedule=schedule)
    @dataclass
    class Report:
        def Main_Start(self, p, input):
            p.finish(input)


@pytest.fixture
def registry_():
    with isolated_registry() as reg:
        yield reg


def _runs(prefix: str = "sched-") -> list[str]:
    return sorted(ProcessInstance.objects.filter(id__startswith=prefix).values_list("id", flat=True))


def _operator_schedule(**fields) -> ScheduleRow:
    row = ScheduleRow(**{"name": "sched-op", "definition": "sched-report", "interval_seconds": 60,
                         "input": {"n": 1}, **fields})
    schedules.set_next_run(row)
    row.save()
    return row


def test_a_declared_schedule_is_written_into_the_table_and_starts_its_slot_once(db, registry_):
    _define(Schedule.cron("0 9 * * mon-fri", tz="Europe/Paris", input={"kind": "daily"}))
    with WorkflowRunner(now=T0 - timedelta(hours=2)) as run:  # 06:59:30 UTC, 08:59:30 in Paris
        assert schedules.tick() == []
        row = ScheduleRow.objects.get(name="sched-report")
        assert (row.declared_in_code, row.enabled, row.cron, row.timezone, row.input) == (
            True, True, "0 9 * * mon-fri", "Europe/Paris", {"kind": "daily"})
        assert row.next_run == datetime(2026, 5, 4, 7, tzinfo=timezone.utc)  # 09:00 in Paris (CEST)

        run.advance(seconds=31)
        assert schedules.tick() == ["sched-report-20260504T070000Z"]
        assert schedules.tick() == []  # the same slot again: nothing more
        run.run()
        run.assert_finished("sched-report-20260504T070000Z", {"kind": "daily"})
        row.refresh_from_db()
        assert (row.last_slot, row.last_process_id, row.last_error) == (
            datetime(2026, 5, 4, 7, tzinfo=timezone.utc), "sched-report-20260504T070000Z", "")
        assert row.next_run == datetime(2026, 5, 5, 7, tzinfo=timezone.utc)
    assert _runs() == ["sched-report-20260504T070000Z"]


def test_code_changes_update_the_row_but_keep_the_operators_enabled(db, registry_):
    _define(Schedule.every(timedelta(minutes=5)))
    with WorkflowRunner(now=T0):
        schedules.tick()
        ScheduleRow.objects.filter(name="sched-report").update(enabled=False)
        _define(Schedule.every(timedelta(minutes=10), input={"v": 2}))  # a redeploy changes the code
        schedules.tick()
    row = ScheduleRow.objects.get(name="sched-report")
    assert (row.interval_seconds, row.input, row.enabled) == (600, {"v": 2}, False)
    assert ScheduleRow.objects.count() == 1


def test_a_schedule_no_longer_declared_in_code_stays_but_starts_nothing(db, registry_):
    _define(Schedule.every(60))
    with WorkflowRunner(now=T0) as run:
        schedules.tick()
        _define(None)  # the declaration was removed
        run.advance(minutes=2)
        assert schedules.tick() == []
    assert ScheduleRow.objects.filter(name="sched-report", declared_in_code=True).exists()
    assert _runs() == []


def test_a_disabled_schedule_starts_nothing(db, registry_):
    _define()
    _operator_schedule(enabled=False)
    with WorkflowRunner(now=T0) as run:
        run.advance(minutes=5)
        assert schedules.tick() == []
    assert _runs() == []


def test_missed_slots_are_skipped_by_default(db, registry_):
    _define()
    with WorkflowRunner(now=T0) as run:
        row = _operator_schedule(interval_seconds=None, cron="0 * * * *")
        run.advance(hours=3, minutes=20)  # every worker was down: 09:00 to 12:00 missed
        assert schedules.tick() == []
        row.refresh_from_db()
        assert row.last_slot is None
        assert row.next_run == datetime(2026, 5, 4, 13, tzinfo=timezone.utc)  # the next one to come
        run.advance(minutes=40, seconds=35)
        assert schedules.tick() == ["sched-op-20260504T130000Z"]
    assert _runs() == ["sched-op-20260504T130000Z"]


def test_a_slot_found_within_the_grace_still_starts_under_skip(db, registry_, settings):
    settings.SLCT_SCHEDULE_GRACE = 120
    _define()
    with WorkflowRunner(now=T0) as run:
        _operator_schedule(interval_seconds=None, cron="0 * * * *")
        run.advance(seconds=30 + 100)  # 09:00 found 100 s late (a worker restarting)
        assert schedules.tick() == ["sched-op-20260504T090000Z"]


def test_catchup_latest_starts_the_latest_missed_slot_once(db, registry_):
    _define()
    with WorkflowRunner(now=T0) as run:
        _operator_schedule(interval_seconds=None, cron="0 * * * *", catchup="latest")
        run.advance(hours=3, minutes=20)
        assert schedules.tick() == ["sched-op-20260504T120000Z"]
        assert schedules.tick() == []
    assert _runs() == ["sched-op-20260504T120000Z"]


def test_a_stale_tick_that_read_before_another_finished_starts_nothing_more(db, registry_):
    """The interleaving of two workers: one reads the due row, the other starts the slot and moves
    the row on, then the first goes on with what it read."""
    _define()
    with WorkflowRunner(now=T0) as run:
        _operator_schedule()
        run.advance(seconds=31)
        stale = ScheduleRow.objects.get(name="sched-op")
        assert schedules.tick() == ["sched-op-20260504T090000Z"]
        moved = ScheduleRow.objects.get(name="sched-op").next_run
        assert schedules._start_due(stale, run.now(), timedelta(seconds=60)) is None  # a no-op start
        assert ScheduleRow.objects.get(name="sched-op").next_run == moved  # not moved back
    assert _runs() == ["sched-op-20260504T090000Z"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_ticks_start_each_slot_once(registry_):
    _define()
    _define(name="sched-other")
    with WorkflowRunner(now=T0) as run:
        for i in range(6):
            _operator_schedule(name=f"sched-op{i}", definition="sched-report" if i % 2 else "sched-other")
        run.advance(seconds=31)
        created = [pid for ids in run_concurrently(schedules.tick, 4) for pid in ids]
        assert schedules.tick() == []  # nothing left to start
    expected = [f"sched-op{i}-20260504T090000Z" for i in range(6)]
    assert sorted(created) == expected  # each created by exactly one tick
    assert _runs() == expected


def test_an_unknown_definition_is_recorded_on_the_schedule_and_the_slot_passes(db, registry_):
    _define()
    with WorkflowRunner(now=T0) as run:
        row = _operator_schedule()
        registry_.remove("sched-report")  # the code that had it was removed
        run.advance(seconds=31)
        assert schedules.tick() == []
    row.refresh_from_db()
    assert "unknown process definition 'sched-report'" in row.last_error
    assert row.next_run == datetime(2026, 5, 4, 9, 1, tzinfo=timezone.utc)
    assert _runs() == []


def test_the_tick_is_a_registered_maintenance_task_read_from_settings(settings):
    from slct_workflows import maintenance

    task = next(t for t in maintenance.tasks() if t.name == "schedules")
    assert task.func is schedules.tick
    settings.SLCT_SCHEDULE_POLL = 2.5
    assert task.every() == 2.5


def test_a_tick_with_nothing_due_is_one_query(db, registry_, django_assert_num_queries):
    _define(Schedule.every(60))
    with WorkflowRunner(now=T0):
        _operator_schedule()
        schedules.tick()  # writes the declared row
        with django_assert_num_queries(1):
            assert schedules.tick() == []


def test_a_row_written_without_a_next_run_is_planned_at_the_next_tick(db, registry_):
    _define()
    with WorkflowRunner(now=T0) as run:
        ScheduleRow.objects.create(name="sched-shell", definition="sched-report", cron="0 9 * * *")
        assert schedules.tick() == []
        assert ScheduleRow.objects.get(name="sched-shell").next_run == datetime(2026, 5, 4, 9, tzinfo=timezone.utc)
        run.advance(seconds=31)
        assert schedules.tick() == ["sched-shell-20260504T090000Z"]


def test_a_row_with_an_impossible_cron_says_why_and_starts_nothing(db, registry_, django_assert_num_queries):
    _define()
    with WorkflowRunner(now=T0) as run:
        ScheduleRow.objects.create(name="sched-broken", definition="sched-report", cron="0 9 * *")
        schedules.tick()
        row = ScheduleRow.objects.get(name="sched-broken")
        assert "must have 5 fields" in row.last_error and row.next_run is None
        run.advance(days=1)
        with django_assert_num_queries(1):  # said once: later ticks only read it
            assert schedules.tick() == []
