"""When scheduled processes start: the `Schedule` value authors declare, and its time slots.

Pure (no database): the declaration (`@register(..., schedule=Schedule.cron(...))`), the admin
form and the leading worker's tick (slct_workflows.schedules) all use it.

Slots are instants in UTC. A cron expression is read on the wall clock of its time zone; a
wall time the clock skips (spring forward) runs as much later as the jump (02:30 -> 03:30), and
a wall time the clock passes twice (fall back) runs once, at its first occurrence. Interval
slots are aligned on the Unix epoch (every 5 minutes: :00, :05, ...), so every worker and every
restart agrees on them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from slct_workflows.errors import DeclarationError
from slct_workflows.values import NAME_MAX, is_name

SKIP, LATEST = "skip", "latest"
CATCHUP_POLICIES = (SKIP, LATEST)
SLOT_FORMAT = "%Y%m%dT%H%M%SZ"
# The process id is "<schedule name>-<slot>": the name leaves room for the slot.
SCHEDULE_NAME_MAX = NAME_MAX - len("-20260101T000000Z")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICRO = timedelta(microseconds=1)
_CRON_KEYWORDS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
# Wall times examined around a DST change before giving up (a minute-level cron passes ~60 in
# a repeated hour).
_MAX_STEPS = 2000


@dataclass(frozen=True)
class Schedule:
    """When to start a process, and with what input. Build it with `Schedule.cron(...)` or
    `Schedule.every(...)`; both check everything at once and raise DeclarationError."""

    expression: str = ""
    interval_seconds: int = 0
    tz: str = "UTC"
    input: Any = None
    catchup: str = SKIP
    name: str = ""  # empty: the definition's name (set by `for_definition`)

    def __post_init__(self) -> None:
        if bool(self.expression) == bool(self.interval_seconds):
            raise DeclarationError("a schedule needs either a cron expression or an interval, not both")
        if self.expression:
            check_cron(self.expression)
        elif not isinstance(self.interval_seconds, int) or self.interval_seconds < 1:
            raise DeclarationError(f"schedule interval must be a whole number of seconds >= 1, "
                                   f"got {self.interval_seconds!r}")
        zone(self.tz)
        if self.catchup not in CATCHUP_POLICIES:
            raise DeclarationError(f"schedule catchup must be one of {', '.join(CATCHUP_POLICIES)}, "
                                   f"got {self.catchup!r}")
        if self.name:
            check_name(self.name)
        try:
            normalized = json.loads(json.dumps(self.input))
        except (TypeError, ValueError) as exc:
            raise DeclarationError(f"schedule input must be JSON: {exc}") from None
        object.__setattr__(self, "input", normalized)  # tuples become lists, as stored

    @classmethod
    def cron(cls, expression: str, *, tz: str = "UTC", input: Any = None, catchup: str = SKIP,
             name: str = "") -> "Schedule":
        """`Schedule.cron("0 9 * * mon-fri", tz="Europe/Paris")`: minute hour day month weekday,
        read on the wall clock of `tz` (an IANA name), or @hourly, @daily, @weekly, @monthly,
        @yearly."""
        if not isinstance(expression, str) or not expression.strip():
            raise DeclarationError(f"schedule cron expression must be a non-empty string, got {expression!r}")
        return cls(expression=" ".join(expression.split()), tz=tz, input=input, catchup=catchup, name=name)

    @classmethod
    def every(cls, interval: timedelta | int, *, input: Any = None, catchup: str = SKIP,
              name: str = "") -> "Schedule":
        """`Schedule.every(timedelta(minutes=5))` (or a number of seconds): slots aligned on the
        epoch in UTC."""
        if isinstance(interval, timedelta):
            seconds = interval.total_seconds()
            if seconds != int(seconds):
                raise DeclarationError(f"schedule interval must be a whole number of seconds, got {interval}")
            interval = int(seconds)
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise DeclarationError(f"schedule interval must be a timedelta or whole seconds >= 1, got {interval!r}")
        return cls(interval_seconds=interval, input=input, catchup=catchup, name=name)

    # -- slots -----------------------------------------------------------------------------

    def next_after(self, t: datetime) -> datetime:
        """The first slot strictly after `t` (timezone-aware), in UTC."""
        t = _utc(t)
        if self.interval_seconds:
            step = self.interval_seconds * 1_000_000
            return EPOCH + _MICRO * (((t - EPOCH) // _MICRO) // step + 1) * step
        z = zone(self.tz)
        walls = croniter(self.expression, _wall(t, z))
        for _ in range(_MAX_STEPS):
            slot = _instant(walls.get_next(datetime), z)
            if slot > t:
                return slot
        raise DeclarationError(f"cron {self.expression!r} has no slot after {t.isoformat()}")

    def latest_at_or_before(self, t: datetime, floor: datetime) -> datetime | None:
        """The last slot at or before `t` and not before `floor`, or None."""
        t, floor = _utc(t), _utc(floor)
        if self.interval_seconds:
            step = self.interval_seconds * 1_000_000
            slot = EPOCH + _MICRO * (((t - EPOCH) // _MICRO) // step) * step
            return slot if slot >= floor else None
        # A nearby slot from the wall clock, then forward to the last one: a repeated hour can
        # put later slots at or before `t` than the one just before its wall time.
        z = zone(self.tz)
        walls = croniter(self.expression, _wall(t, z) + timedelta(seconds=1))
        start = _instant(walls.get_prev(datetime), z)
        for _ in range(_MAX_STEPS):
            if start <= t:
                break
            start = _instant(walls.get_prev(datetime), z)  # a skipped wall time read past `t`
        candidate = start if floor <= start <= t else floor if self.is_slot(floor) else self.next_after(floor)
        slot = None
        for _ in range(_MAX_STEPS):
            if candidate > t:
                break
            slot, candidate = candidate, self.next_after(candidate)
        return slot

    def is_slot(self, t: datetime) -> bool:
        t = _utc(t)
        return self.next_after(t - _MICRO) == t

    def plan(self, next_run: datetime, now: datetime, grace: timedelta) -> tuple[datetime | None, datetime]:
        """What the tick does at `now` for a schedule whose next run is `next_run`: the slot to
        start (None: nothing, or missed slots skipped) and the next run after it. At most one
        slot starts per tick: after a downtime "skip" starts the latest slot only if it is at most
        `grace` late, "latest" starts it however late it is."""
        if next_run > now:
            return None, next_run
        slot = self.latest_at_or_before(now, floor=next_run)
        upcoming = self.next_after(now)
        if slot is None or (self.catchup == SKIP and now - slot > grace):
            return None, upcoming
        return slot, upcoming

    def describe(self) -> str:
        if self.interval_seconds:
            return f"every {describe_seconds(self.interval_seconds)}"
        return f"cron {self.expression}" + ("" if self.tz == "UTC" else f" ({self.tz})")


def check_cron(expression: str) -> None:
    fields = expression.split()
    if expression.startswith("@"):
        if expression not in _CRON_KEYWORDS:
            raise DeclarationError(f"cron {expression!r}: unknown keyword (use one of "
                                   f"{', '.join(sorted(_CRON_KEYWORDS))})")
    elif len(fields) != 5:
        raise DeclarationError(f"cron {expression!r} must have 5 fields (minute hour day month weekday), "
                               f"has {len(fields)}; for seconds use Schedule.every")
    try:
        croniter(expression, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise DeclarationError(f"cron {expression!r} never matches a date") from None
    except CroniterError as exc:
        raise DeclarationError(f"cron {expression!r} is not valid: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:  # croniter lets some parse errors through raw
        raise DeclarationError(f"cron {expression!r} is not valid: {exc}") from None


def zone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise DeclarationError(f"schedule time zone must be an IANA name such as 'Europe/Paris', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DeclarationError(f"unknown time zone {name!r} (use an IANA name such as 'Europe/Paris' "
                               f"or 'UTC')") from None


def check_name(name: str) -> None:
    if not is_name(name) or len(name) > SCHEDULE_NAME_MAX:
        raise DeclarationError(f"schedule name must be 1-{SCHEDULE_NAME_MAX} characters of letters, digits "
                               f"and _.:@+- starting with a letter or digit, got {name!r}")


def for_definition(definition: str, schedule: Schedule | Sequence[Schedule] | None) -> tuple[Schedule, ...]:
    """The schedules `register(name, schedule=...)` declares, each named (default: the
    definition's name)."""
    if schedule is None:
        return ()
    items = [schedule] if isinstance(schedule, Schedule) else list(schedule) if isinstance(schedule, (list, tuple)) else None
    if items is None or not all(isinstance(s, Schedule) for s in items):
        raise DeclarationError(f"process definition {definition!r}: schedule= takes a Schedule (or a list of them), "
                               f"got {schedule!r}")
    named = []
    for s in items:
        name = s.name or definition
        check_name(name)
        named.append(Schedule(s.expression, s.interval_seconds, s.tz, s.input, s.catchup, name))
    names = [s.name for s in named]
    if len(set(names)) != len(names):
        raise DeclarationError(f"process definition {definition!r}: its schedules need distinct names "
                               f"(name=...), got {names}")
    return tuple(named)


def process_id(schedule_name: str, slot: datetime) -> str:
    """The id of the process started for one slot: the same on every worker, so a slot starts once."""
    return f"{schedule_name}-{_utc(slot).strftime(SLOT_FORMAT)}"


def describe_seconds(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"schedule times must be timezone-aware, got {t!r}")
    return t.astimezone(timezone.utc)


def _wall(t: datetime, z: ZoneInfo) -> datetime:
    return t.astimezone(z).replace(tzinfo=None)


def _instant(wall: datetime, z: ZoneInfo) -> datetime:
    # fold=0: the first of a repeated wall time; a skipped one reads with the offset before the jump
    return wall.replace(tzinfo=z, fold=0).astimezone(timezone.utc)
