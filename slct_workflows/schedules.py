"""Scheduled starts: the leading worker's tick starts each process whose time slot has come.

Every SLCT_SCHEDULE_POLL seconds (a maintenance task, slct_workflows.maintenance) the tick
writes the schedules declared in code (`@register(..., schedule=...)`) into the Schedule table,
then starts every enabled schedule whose next run has passed, through services.start_process,
under the id "<schedule name>-<slot in UTC>". That id makes a start idempotent: two workers (or
two ticks) that both see a slot due start one process, and the second start is a no-op. The row
moves on to its next run with a compare-and-set on the next run it read, so a slow tick never
moves a schedule back.

Missed slots (all workers down, a long pause) follow the schedule's catchup policy
(slct_workflows.slots.Schedule.plan): "skip" starts nothing for slots more than
SLCT_SCHEDULE_GRACE seconds late, "latest" starts the latest missed slot once.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from slct_workflows import clock, conf, maintenance, services, slots
from slct_workflows.definitions import registry
from slct_workflows.errors import Conflict, DeclarationError, InvalidInput, NotFound
from slct_workflows.models import Schedule as ScheduleRow

log = logging.getLogger("slct_workflows")
TIMING_FIELDS = ("cron", "interval_seconds", "timezone")


def declared() -> dict[str, tuple[str, slots.Schedule]]:
    """Schedule name -> (definition, schedule) as the running code declares them (the latest
    version of each definition)."""
    out: dict[str, tuple[str, slots.Schedule]] = {}
    for definition in registry.latest():
        for s in definition.schedules:
            if s.name in out and out[s.name][0] != definition.name:
                log.warning("schedule %r is declared by both %r and %r; %r's is used",
                            s.name, out[s.name][0], definition.name, out[s.name][0])
                continue
            out[s.name] = (definition.name, s)
    return out


def spec(row: ScheduleRow) -> slots.Schedule:
    """The row's schedule as a value; DeclarationError if the row holds something impossible."""
    if row.cron:
        return slots.Schedule.cron(row.cron, tz=row.timezone, input=row.input, catchup=row.catchup, name=row.name)
    return slots.Schedule.every(row.interval_seconds or 0, input=row.input, catchup=row.catchup, name=row.name)


def set_next_run(row: ScheduleRow, now: datetime | None = None) -> None:
    """Plan the row's next run from now (none while it is disabled): after an edit, or when it
    is enabled again (slots missed while it was off are not caught up)."""
    row.next_run = spec(row).next_after(now or clock.now()) if row.enabled else None


@maintenance.task("schedules", every=lambda: conf.schedule_poll())
def tick(now: datetime | None = None) -> list[str]:
    """Start the processes whose slot has come; returns the ids this call created."""
    now = now or clock.now()
    code = declared()
    rows = {row.name: row for row in ScheduleRow.objects.filter(
        Q(declared_in_code=True) | Q(name__in=list(code))
        | Q(enabled=True, next_run__lte=now) | Q(enabled=True, next_run__isnull=True))}
    sync_declared(code, rows, now)
    grace = timedelta(seconds=conf.schedule_grace())
    started = []
    for row in rows.values():
        if not row.enabled or (row.declared_in_code and row.name not in code):
            continue  # off, or declared by code this worker no longer has
        if row.next_run is None:
            _initialize(row, now)
        elif row.next_run <= now:
            pid = _start_due(row, now, grace)
            if pid:
                started.append(pid)
    return started


def sync_declared(code: dict[str, tuple[str, slots.Schedule]], rows: dict[str, ScheduleRow], now: datetime) -> None:
    """Write the schedules declared in code into the table (by name; code wins over a row an
    operator made under the same name). Only what differs is written; `enabled` stays the
    operator's."""
    for name, (definition, s) in code.items():
        want = {"definition": definition, "cron": s.expression, "interval_seconds": s.interval_seconds or None,
                "timezone": s.tz, "input": s.input, "catchup": s.catchup, "declared_in_code": True}
        row = rows.get(name)
        if row is None:
            row = ScheduleRow(name=name, enabled=True, next_run=s.next_after(now), **want)
            try:
                with transaction.atomic():
                    row.save()
            except IntegrityError:
                continue  # another worker wrote it first: the next tick reads it
            rows[name] = row
            log.info("schedule %s declared in code: %s, next run %s", name, s.describe(), row.next_run)
            continue
        changed = {k: v for k, v in want.items() if getattr(row, k) != v}
        if not changed:
            continue
        if row.enabled and (row.next_run is None or any(k in changed for k in TIMING_FIELDS)):
            changed["next_run"] = s.next_after(now)
        for k, v in changed.items():
            setattr(row, k, v)
        ScheduleRow.objects.filter(pk=row.pk).update(**changed, updated_at=timezone.now())
        log.info("schedule %s updated from code: %s", name, ", ".join(sorted(changed)))


def _initialize(row: ScheduleRow, now: datetime) -> None:
    """A row written without a next run (from a shell, a fixture): plan it from now."""
    try:
        set_next_run(row, now)
    except DeclarationError as exc:
        if row.last_error != str(exc):  # said once; the row waits for a fix
            log.warning("schedule %s cannot run: %s", row.name, exc)
            _advance(row, None, last_error=str(exc))
        return
    _advance(row, None, next_run=row.next_run, last_error="")


def _start_due(row: ScheduleRow, now: datetime, grace: timedelta) -> str | None:
    read_next_run = row.next_run
    try:
        slot, upcoming = spec(row).plan(read_next_run, now, grace)
    except DeclarationError as exc:  # a row written around the admin's checks: stop until fixed
        log.warning("schedule %s cannot run: %s", row.name, exc)
        _advance(row, read_next_run, next_run=None, last_error=str(exc))
        return None
    if slot is None:
        log.info("schedule %s: slot %s missed by more than %s s, skipped (catchup=skip); next run %s",
                 row.name, read_next_run, grace.total_seconds(), upcoming)
        _advance(row, read_next_run, next_run=upcoming)
        return None
    pid = slots.process_id(row.name, slot)
    try:
        created = services.start_process(row.definition, row.input, id=pid).created
    except Conflict as exc:
        # The slot's process exists with another input: the schedule was edited after another
        # tick started it. That slot is started; nothing to do.
        log.info("schedule %s: slot %s already started (%s)", row.name, slot, exc)
        created = False
    except (NotFound, InvalidInput) as exc:
        log.warning("schedule %s: slot %s not started: %s", row.name, slot, exc)
        _advance(row, read_next_run, next_run=upcoming, last_error=f"slot {slot:%Y-%m-%d %H:%M:%S}Z not started: {exc}")
        return None
    _advance(row, read_next_run, next_run=upcoming, last_slot=slot, last_process_id=pid, last_error="")
    if created:
        log.info("schedule %s started process %s; next run %s", row.name, pid, upcoming)
    return pid if created else None


def _advance(row: ScheduleRow, read_next_run: datetime | None, **fields: object) -> None:
    """Write the row's progress unless another tick (or an edit) moved it since it was read."""
    ScheduleRow.objects.filter(pk=row.pk, next_run=read_next_run).update(**fields, updated_at=timezone.now())
