"""Deploying new code under live processes: the pre-deploy check and status migrations.

A process that is running (or failed, and may be retried) is parked in the database at a *method
name*: a runnable goroutine will call `Goroutine.next_method`, a blocked goroutine's select cases
will call `PendingCase.target`, and its state is a dict of field names. New code must still have
those methods, accepting the arguments they will get, and those fields; `check()` says where it
does not. `migrate_status()` moves goroutines from a method that is going away to its replacement.

Both are plain services; `manage.py slct_check` and `manage.py slct_migrate_status` call them.
"""
from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

from django.db import transaction

from slct_workflows import clock, semantics
from slct_workflows.definitions import Definition, accepts_value, registry, split_method
from slct_workflows.errors import NotFound, SlctError
from slct_workflows.models import (
    PROCESS_LIVE,
    Channel,
    Event,
    EventKind,
    Goroutine,
    GoroutineStatus,
    NextKind,
    PendingCase,
    ProcessInstance,
)
from slct_workflows.runtime import with_db_retries

LIVE = PROCESS_LIVE
# Goroutines that will call `next_method` (a failed one calls it again when the process is retried).
WILL_RUN = (GoroutineStatus.RUNNABLE, GoroutineStatus.FAILED)

# Problem codes
UNREGISTERED = "unregistered"
MISSING_METHOD = "missing_method"
SIGNATURE = "signature"
DROPPED_FIELD = "dropped_field"
FIELD_WITHOUT_DEFAULT = "field_without_default"
CODES = (UNREGISTERED, MISSING_METHOD, SIGNATURE, DROPPED_FIELD, FIELD_WITHOUT_DEFAULT)

BATCH = 500


def definition_for(proc: ProcessInstance) -> Definition:
    """The definition the engine runs this process's steps with. NotFound if none."""
    return registry.for_process(proc.definition, proc.version)


# -- calling a step method --------------------------------------------------------------------

def call_problem(definition: Definition, method: str, gets_value: bool | None, case: str = "") -> tuple[str, str] | None:
    """Can the engine call `method` of `definition` with what the case delivers?

    `gets_value`: True for a recv case (the value, or None on a closed channel), False for
    timer/send/default cases (nothing), None when either works (a start or go without argument:
    the engine passes None to a method that takes a value, and nothing to one that does not).
    Returns (code, message) or None if the call is fine.
    """
    cls = definition.cls
    label = f"{cls.__name__}{_version_label(definition.version)}"
    if not definition.has_method(method):
        return MISSING_METHOD, f"{method} does not exist in {label}"
    try:
        bound = getattr(cls.__new__(cls), method)  # as the engine calls it, without running __init__
        sig = inspect.signature(bound)
    except (TypeError, ValueError):  # an odd class or callable: nothing to check against
        return None
    shown = f"{method}{inspect.signature(getattr(cls, method))}"
    with_value = accepts_value(bound) and _binds(sig, 2)
    without_value = _binds(sig, 1)
    if gets_value is True and not with_value:
        return SIGNATURE, f"{shown} cannot take the value {case or 'its case'} delivers (add a value parameter)"
    if gets_value is False and not without_value:
        return SIGNATURE, f"{shown} needs a value, but {case or 'its case'} passes none (give the parameter a default)"
    if gets_value is None and not (with_value or without_value):
        return SIGNATURE, f"{shown} cannot be called as a step method (self, p[, value])"
    return None


def _binds(sig: inspect.Signature, n: int) -> bool:
    try:
        sig.bind(*([None] * n))
    except TypeError:
        return False
    return True


def _version_label(version: str) -> str:
    return f" (version {version})" if version else ""


def case_gets_value(kind: str) -> bool:
    """A pending case's target: recv passes a value, timer/send pass none."""
    return kind == "recv"


def runnable_gets_value(g: Goroutine) -> bool | None:
    """What a runnable (or failed, to be retried) goroutine's next_method will receive."""
    if g.next_kind == NextKind.RECV:
        return True
    if g.next_kind in (NextKind.SEND, NextKind.TIMER, NextKind.DEFAULT):
        return False
    # "start" (the input), "go" (the argument) or unknown: the stored value, if there is one
    return True if g.next_value is not None else None


def _pending_label(c: PendingCase) -> str:
    return semantics.describe_case(c.kind, c.channel_id, c.deadline)


def _runnable_label(g: Goroutine) -> str:
    return g.next_case or "start"


def _case_word(kind: str) -> str:
    """"recv" -> "its recv case" (the wording of signature problems); "start"/"go" stand alone."""
    kind = kind or "start"
    return f"its {kind}" if kind in ("start", "go") else f"its {kind} case"


# -- the check --------------------------------------------------------------------------------

@dataclass
class Problem:
    process_id: str
    definition: str
    version: str
    status: str  # the process's
    code: str
    message: str
    goroutine: str = ""
    method: str = ""
    allowed: bool = False  # reported, but does not fail the check (`--allow CODE`)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckReport:
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def failing(self) -> list[Problem]:
        return [p for p in self.problems if not p.allowed]

    @property
    def ok(self) -> bool:
        return not self.failing

    def by_process(self) -> dict[str, list[Problem]]:
        out: dict[str, list[Problem]] = {}
        for p in self.problems:
            out.setdefault(p.process_id, []).append(p)
        return out

    def affected(self) -> list[str]:
        """Ids of the processes with a failing problem."""
        return list(dict.fromkeys(p.process_id for p in self.failing))

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "checked": self.checked, "affected": self.affected(),
            "problems": [p.as_dict() for p in self.problems],
        }


def _batches(qs, size: int | None = None) -> Iterator[list[ProcessInstance]]:
    size = size or BATCH
    batch: list[ProcessInstance] = []
    for proc in qs.iterator(chunk_size=size):
        batch.append(proc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def check(definitions: Iterable[str] | None = None, *, allow: Iterable[str] = ()) -> CheckReport:
    """Compare every live process (running or failed) with the registered code."""
    allow = set(allow)
    unknown = allow - set(CODES)
    if unknown:
        raise ValueError(f"unknown problem codes {sorted(unknown)}; known: {', '.join(CODES)}")
    qs = ProcessInstance.objects.filter(status__in=LIVE).order_by("created_at", "id").only(
        "id", "definition", "version", "status", "state"
    )
    if definitions:
        qs = qs.filter(definition__in=list(definitions))
    report = CheckReport()
    calls: dict[tuple, tuple[str, str] | None] = {}  # (definition, version, method, gets_value) memo

    for batch in _batches(qs):
        ids = [p.id for p in batch]
        goroutines: dict[str, list[Goroutine]] = {}
        for g in Goroutine.objects.filter(process_id__in=ids, status__in=[*WILL_RUN, GoroutineStatus.BLOCKED]).order_by("id"):
            goroutines.setdefault(g.process_id, []).append(g)
        pending: dict[int, list[PendingCase]] = {}
        for c in PendingCase.objects.filter(
            goroutine__process_id__in=ids, goroutine__status=GoroutineStatus.BLOCKED
        ).order_by("goroutine_id", "case_index"):
            pending.setdefault(c.goroutine_id, []).append(c)

        for proc in batch:
            report.checked += 1
            problems = _check_process(proc, goroutines.get(proc.id, []), pending, calls)
            for p in problems:
                p.allowed = p.code in allow
            report.problems.extend(problems)
    return report


def _check_process(proc: ProcessInstance, goroutines: list[Goroutine], pending: dict[int, list[PendingCase]],
                   calls: dict) -> list[Problem]:
    def problem(code: str, message: str, goroutine: str = "", method: str = "") -> Problem:
        return Problem(proc.id, proc.definition, proc.version, proc.status, code, message, goroutine, method)

    try:
        definition = definition_for(proc)
    except NotFound:
        return [problem(UNREGISTERED, _unregistered_message(proc.definition, proc.version))]

    out: list[Problem] = []

    def check_call(g: Goroutine, method: str, gets_value: bool | None, where: str, case: str) -> None:
        key = (definition.name, definition.version, method, gets_value, case)
        if key not in calls:
            calls[key] = call_problem(definition, method, gets_value, case)
        found = calls[key]
        if found:
            out.append(problem(found[0], f"goroutine {g.name} {where}: {found[1]}", g.name, method))

    for g in goroutines:
        if g.status in WILL_RUN:
            label = _runnable_label(g)
            where = f"({g.status}) will run {g.next_method or '?'} after {label}"
            check_call(g, g.next_method, runnable_gets_value(g), where, _case_word(g.next_kind))
        else:
            for c in pending.get(g.id, []):
                label = _pending_label(c)
                check_call(g, c.target, case_gets_value(c.kind), f"is blocked on {label} -> {c.target}", _case_word(c.kind))

    fields = definition.state_fields()
    state = proc.state if isinstance(proc.state, dict) else {}
    label = f"{definition.cls.__name__}{_version_label(definition.version)}"
    for name in state:
        if name not in fields:
            out.append(problem(
                DROPPED_FIELD,
                f"state field {name!r} (= {_short(state[name])}) is not in {label} any more: "
                f"its value would be dropped at the next step",
            ))
    for name, has_default in fields.items():
        if name not in state and not has_default:
            out.append(problem(
                FIELD_WITHOUT_DEFAULT,
                f"new state field {name!r} of {label} has no default, and this process has no value for it",
            ))
    return out


def _unregistered_message(name: str, version: str) -> str:
    known = [d.version for d in registry.all() if d.name == name]
    if not known:
        return f"definition {name!r} is not registered any more"
    shown = ", ".join(repr(v) if v else "(unversioned)" for v in known)
    return f"definition {name!r} version {version!r} is not registered any more (registered versions: {shown})"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- status migration -------------------------------------------------------------------------

class MigrationError(SlctError):
    """The migration cannot be done as asked; nothing was changed."""

    code = "migration"


@dataclass
class Move:
    process_id: str
    goroutine: str
    status: str  # the goroutine's: runnable, failed (next_method moves) or blocked (its cases move)
    cases: list[str] = field(default_factory=list)  # blocked: the pending cases retargeted

    def describe(self) -> str:
        if self.status == GoroutineStatus.BLOCKED:
            return f"{self.goroutine} (blocked on {', '.join(self.cases)})"
        return f"{self.goroutine} ({self.status})"


@dataclass
class MigrateReport:
    definition: str
    from_method: str
    to_method: str
    version: str | None
    dry_run: bool
    moves: list[Move] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # process id -> why (changed under us)

    @property
    def processes(self) -> list[str]:
        return list(dict.fromkeys(m.process_id for m in self.moves))


def migrate_status(definition: str, from_method: str, to_method: str, *, version: str | None = None,
                   dry_run: bool = False) -> MigrateReport:
    """Move every goroutine of live `definition` processes that will run `from_method` to
    `to_method`: runnable/failed goroutines' next_method and blocked goroutines' pending case
    targets. All-or-nothing validation first (the target must exist in each process's definition
    version and accept what each case delivers); then one transaction per process, with the
    process row, the channels its cases wait on and its goroutines locked in the engine's order,
    and a `migrate` event in its history."""
    _validate_names(from_method, to_method)
    report = MigrateReport(definition, from_method, to_method, version, dry_run)
    candidates = _candidates(definition, from_method, version)
    if not candidates:
        if not ProcessInstance.objects.filter(definition=definition).exists() and not _registered(definition):
            raise MigrationError(f"unknown process definition {definition!r}")
        return report

    errors: list[str] = []
    planned: dict[str, list[Move]] = {}
    for proc in ProcessInstance.objects.filter(pk__in=candidates).order_by("created_at", "id"):
        moves, problems = _plan(proc, from_method, to_method)
        errors += problems
        planned[proc.id] = moves
    if errors:
        raise MigrationError(
            f"cannot move {definition} goroutines from {from_method} to {to_method}; nothing was changed:\n  "
            + "\n  ".join(errors)
        )
    if dry_run:
        report.moves = [m for moves in planned.values() for m in moves]
        return report

    for pid in planned:
        moves, why = with_db_retries(lambda: _migrate_one(pid, definition, from_method, to_method, version))
        report.moves += moves
        if why:
            report.skipped[pid] = why
    return report


def _registered(name: str) -> bool:
    try:
        registry.get(name)
    except NotFound:
        return False
    return True


def _validate_names(from_method: str, to_method: str) -> None:
    for what, name in (("from", from_method), ("to", to_method)):
        if split_method(name) is None:
            raise MigrationError(f"{what} method {name!r} does not follow the {{Goroutine}}_{{Status}} naming rule")
    if from_method == to_method:
        raise MigrationError("from and to are the same method")
    if split_method(from_method)[0] != split_method(to_method)[0]:
        raise MigrationError(
            f"{from_method} and {to_method} belong to different goroutines "
            f"({split_method(from_method)[0]} and {split_method(to_method)[0]}); a goroutine keeps its methods"
        )


def _candidates(definition: str, from_method: str, version: str | None) -> list[str]:
    runnable = Goroutine.objects.filter(
        process__definition=definition, process__status__in=LIVE, status__in=WILL_RUN, next_method=from_method,
    )
    blocked = PendingCase.objects.filter(
        goroutine__process__definition=definition, goroutine__process__status__in=LIVE,
        goroutine__status=GoroutineStatus.BLOCKED, target=from_method,
    )
    if version is not None:
        runnable = runnable.filter(process__version=version)
        blocked = blocked.filter(goroutine__process__version=version)
    ids = set(runnable.values_list("process_id", flat=True)) | set(blocked.values_list("goroutine__process_id", flat=True))
    return sorted(ids)


def _plan(proc: ProcessInstance, from_method: str, to_method: str) -> tuple[list[Move], list[str]]:
    """What would move in this process, and why it cannot (if it cannot). Read the rows fresh."""
    try:
        definition = definition_for(proc)
    except NotFound:
        return [], [f"process {proc.id}: {_unregistered_message(proc.definition, proc.version)}"]
    moves: list[Move] = []
    errors: list[str] = []
    goroutines = Goroutine.objects.filter(process=proc, status__in=[*WILL_RUN, GoroutineStatus.BLOCKED]).order_by("id")
    for g in goroutines:
        if g.status in WILL_RUN:
            if g.next_method != from_method:
                continue
            found = call_problem(definition, to_method, runnable_gets_value(g), _case_word(g.next_kind))
            if found:
                errors.append(f"process {proc.id}, goroutine {g.name} ({g.status}): {found[1]}")
            moves.append(Move(proc.id, g.name, g.status))
            continue
        cases = [c for c in PendingCase.objects.filter(goroutine=g).order_by("case_index") if c.target == from_method]
        if not cases:
            continue
        for c in cases:
            found = call_problem(definition, to_method, case_gets_value(c.kind), _case_word(c.kind))
            if found:
                errors.append(f"process {proc.id}, goroutine {g.name} (blocked on {_pending_label(c)}): {found[1]}")
        moves.append(Move(proc.id, g.name, g.status, [_pending_label(c) for c in cases]))
    return moves, list(dict.fromkeys(errors))


def _migrate_one(pid: str, definition: str, from_method: str, to_method: str,
                 version: str | None) -> tuple[list[Move], str]:
    with transaction.atomic():
        # The engine's lock order: the process row, then channel rows by name, then goroutine rows.
        proc = ProcessInstance.objects.select_for_update().filter(pk=pid).first()
        if proc is None:
            return [], "deleted meanwhile"
        if proc.status not in LIVE or proc.definition != definition or (version is not None and proc.version != version):
            return [], f"now {proc.status}"
        # Under the process lock no goroutine of it can start waiting on a new channel; a
        # counterpart may still fire one (it holds the channel lock): lock those channels first.
        chans = sorted(set(
            PendingCase.objects.filter(goroutine__process=proc, channel__isnull=False).values_list("channel_id", flat=True)
        ))
        list(Channel.objects.select_for_update().filter(name__in=chans).order_by("name").values_list("name", flat=True))
        list(Goroutine.objects.select_for_update().filter(process=proc).order_by("id").values_list("id", flat=True))

        moves, errors = _plan(proc, from_method, to_method)
        if errors:
            return [], "; ".join(errors)
        if not moves:
            return [], "no goroutine is at that method any more"
        names = [m.goroutine for m in moves]
        Goroutine.objects.filter(
            process=proc, name__in=names, status__in=WILL_RUN, next_method=from_method
        ).update(next_method=to_method)
        PendingCase.objects.filter(
            goroutine__process=proc, goroutine__status=GoroutineStatus.BLOCKED, target=from_method
        ).update(target=to_method)
        now = clock.now()
        proc.step_count += 1
        Event.objects.create(
            process=proc, seq=proc.step_count, kind=EventKind.MIGRATE, goroutine=", ".join(names)[:100],
            detail={
                "from": from_method, "to": to_method, "version": proc.version,
                "goroutines": [{"name": m.goroutine, "status": m.status, "cases": m.cases} for m in moves],
            },
            started_at=now, finished_at=now,
        )
        proc.save(update_fields=["step_count", "updated_at"])
        return moves, ""
