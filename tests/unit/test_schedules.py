"""Schedule values and their time slots (pure; no database): cron on a zone's wall clock across
DST changes, epoch-aligned intervals, the catchup policies, and declaration errors."""
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from slct_workflows import DeclarationError, Schedule, register
from slct_workflows.slots import LATEST, for_definition, process_id
from slct_workflows.testing import isolated_registry

UTC = timezone.utc
GRACE = timedelta(seconds=60)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def slots_from(schedule: Schedule, start: datetime, n: int) -> list[datetime]:
    out, t = [], start
    for _ in range(n):
        t = schedule.next_after(t)
        out.append(t)
    return out


def test_weekday_cron_in_paris_follows_the_wall_clock_across_spring_forward():
    # Paris moves from UTC+1 to UTC+2 on Sunday 2026-03-29: 09:00 there is 08:00 UTC, then 07:00.
    s = Schedule.cron("0 9 * * mon-fri", tz="Europe/Paris")
    assert slots_from(s, utc(2026, 3, 26, 12), 3) == [utc(2026, 3, 27, 8), utc(2026, 3, 30, 7), utc(2026, 3, 31, 7)]


def test_a_wall_time_skipped_by_spring_forward_runs_as_much_later():
    s = Schedule.cron("30 2 * * *", tz="Europe/Paris")  # 02:30 does not exist on 2026-03-29
    assert slots_from(s, utc(2026, 3, 28, 12), 2) == [utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)]
    assert s.next_after(utc(2026, 1, 1)).tzinfo == UTC


def test_a_wall_time_repeated_by_fall_back_runs_once():
    # 2026-10-25: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice (00:30 and 01:30 UTC).
    s = Schedule.cron("30 2 * * *", tz="Europe/Paris")
    assert slots_from(s, utc(2026, 10, 24, 12), 2) == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_the_latest_slot_in_a_repeated_hour_is_found_from_its_second_pass():
    s = Schedule.cron("*/15 * * * *", tz="Europe/Paris")
    # 01:10 UTC is 02:10 CET (the second 02:10): the last slot before it is 02:45 CEST (00:45 UTC).
    assert s.latest_at_or_before(utc(2026, 10, 25, 1, 10), floor=utc(2026, 10, 25)) == utc(2026, 10, 25, 0, 45)


def test_cron_keywords_and_utc_default():
    s = Schedule.cron("@daily")
    assert s.tz == "UTC" and s.next_after(utc(2026, 5, 1, 0, 0)) == utc(2026, 5, 2)
    assert Schedule.cron("  0   9 * *  mon-fri ").expression == "0 9 * * mon-fri"


def test_interval_slots_are_aligned_on_the_epoch():
    s = Schedule.every(timedelta(minutes=5))
    assert s.interval_seconds == 300
    assert s.next_after(utc(2026, 5, 1, 10, 2, 30)) == utc(2026, 5, 1, 10, 5)
    assert s.next_after(utc(2026, 5, 1, 10, 5)) == utc(2026, 5, 1, 10, 10)  # strictly after
    assert s.latest_at_or_before(utc(2026, 5, 1, 10, 9, 59), floor=utc(2026, 5, 1)) == utc(2026, 5, 1, 10, 5)
    assert s.latest_at_or_before(utc(2026, 5, 1, 10, 9), floor=utc(2026, 5, 1, 10, 9)) is None
    # Another zone's offset changes nothing: slots are instants.
    assert s.next_after(datetime(2026, 5, 1, 12, 2, 30, tzinfo=ZoneInfo("Europe/Paris"))) == utc(2026, 5, 1, 10, 5)


def test_plan_on_time_starts_the_slot_and_moves_on():
    s = Schedule.every(60)
    slot, upcoming = s.plan(utc(2026, 5, 1, 10, 1), utc(2026, 5, 1, 10, 1, 0, 300000), GRACE)
    assert (slot, upcoming) == (utc(2026, 5, 1, 10, 1), utc(2026, 5, 1, 10, 2))


def test_plan_before_the_next_run_does_nothing():
    s = Schedule.every(60)
    assert s.plan(utc(2026, 5, 1, 10, 1), utc(2026, 5, 1, 10, 0, 59), GRACE) == (None, utc(2026, 5, 1, 10, 1))


def test_plan_after_a_downtime_skip_starts_nothing_and_latest_starts_the_last_slot_once():
    hourly_skip = Schedule.cron("0 * * * *")
    hourly_latest = Schedule.cron("0 * * * *", catchup=LATEST)
    next_run, now = utc(2026, 5, 1, 8), utc(2026, 5, 1, 11, 20)  # 08:00..11:00 missed
    assert hourly_skip.plan(next_run, now, GRACE) == (None, utc(2026, 5, 1, 12))
    assert hourly_latest.plan(next_run, now, GRACE) == (utc(2026, 5, 1, 11), utc(2026, 5, 1, 12))


def test_plan_skip_still_starts_a_slot_found_within_the_grace():
    s = Schedule.cron("0 * * * *")
    assert s.plan(utc(2026, 5, 1, 8), utc(2026, 5, 1, 8, 0, 45), GRACE) == (utc(2026, 5, 1, 8), utc(2026, 5, 1, 9))
    assert s.plan(utc(2026, 5, 1, 8), utc(2026, 5, 1, 8, 1, 1), GRACE) == (None, utc(2026, 5, 1, 9))


def test_process_id_names_the_slot_in_utc():
    paris = Schedule.cron("0 9 * * *", tz="Europe/Paris")
    slot = paris.next_after(utc(2026, 7, 1))
    assert process_id("report", slot) == "report-20260701T070000Z"


@pytest.mark.parametrize("build, message", [
    (lambda: Schedule.cron("0 9 * *"), "must have 5 fields"),
    (lambda: Schedule.cron("0 9 * * * 30"), "for seconds use Schedule.every"),
    (lambda: Schedule.cron("61 * * * *"), "is not valid"),
    (lambda: Schedule.cron("0 9 * * funday"), "is not valid"),
    (lambda: Schedule.cron("@reboot"), "unknown keyword"),
    (lambda: Schedule.cron("0 0 31 2 *"), "never matches a date"),
    (lambda: Schedule.cron(""), "non-empty string"),
    (lambda: Schedule.cron("0 9 * * *", tz="Europe/Pariss"), "unknown time zone 'Europe/Pariss'"),
    (lambda: Schedule.cron("0 9 * * *", tz="../etc/passwd"), "unknown time zone"),
    (lambda: Schedule.cron("0 9 * * *", catchup="all"), "catchup must be one of skip, latest"),
    (lambda: Schedule.every(timedelta(0)), "whole seconds >= 1"),
    (lambda: Schedule.every(timedelta(seconds=1.5)), "whole number of seconds"),
    (lambda: Schedule.every(2.5), "whole seconds >= 1"),
    (lambda: Schedule.every(60, input={"at": object()}), "input must be JSON"),
    (lambda: Schedule.every(60, name="bad name"), "schedule name must be"),
    (lambda: Schedule.every(60, name="x" * 190), "schedule name must be"),
])
def test_bad_declarations_raise_a_clear_error(build, message):
    with pytest.raises(DeclarationError, match=message.replace("(", r"\(").replace(".", r"\.")):
        build()


def test_for_definition_names_the_schedules_and_refuses_duplicates():
    named = for_definition("report", [Schedule.every(60), Schedule.cron("@daily", name="report-daily")])
    assert [s.name for s in named] == ["report", "report-daily"]
    with pytest.raises(DeclarationError, match="distinct names"):
        for_definition("report", [Schedule.every(60), Schedule.every(120)])
    with pytest.raises(DeclarationError, match="takes a Schedule"):
        for_definition("report", "0 9 * * *")


def test_register_stores_the_schedule_on_the_definition_and_a_bad_one_registers_nothing():
    with isolated_registry(empty=True) as registry:
        @register("nightly", schedule=Schedule.cron("0 2 * * *", tz="Europe/Paris", input={"full": True}))
        @dataclass
        class Nightly:
            def Main_Start(self, p, input):
                p.exit()

        (declared,) = registry.get("nightly").schedules
        assert (declared.name, declared.expression, declared.tz, declared.input) == (
            "nightly", "0 2 * * *", "Europe/Paris", {"full": True})

        with pytest.raises(DeclarationError, match="takes a Schedule"):
            @register("broken", schedule="every day")
            @dataclass
            class Broken:
                def Main_Start(self, p, input):
                    p.exit()
        assert [d.name for d in registry.all()] == ["nightly"]
