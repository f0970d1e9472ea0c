"""The service API: everything outside a step (REST, Slack, admin, tests) goes through here.

Every function runs in one transaction and either does all of its work or raises an SlctError
subclass having changed nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction

from slct_workflows import access, clock, conf, semantics
from slct_workflows.access import Sender
from slct_workflows.definitions import registry
from slct_workflows.errors import ChannelClosed, Conflict, InvalidInput, NoReceiver, NotFound, QueueUnavailable
from slct_workflows.models import (
    Channel,
    Event,
    EventKind,
    ExternalSend,
    Goroutine,
    GoroutineStatus,
    Outbox,
    OutboxStatus,
    PendingCase,
    ProcessInstance,
    ProcessStatus,
    SendStatus,
    new_id,
)
from slct_workflows.runtime import channels, dispatch, lifecycle
from slct_workflows.runtime.db import with_db_retries
from slct_workflows.runtime.lifecycle import create_process_rows, deliver_result, end_goroutines
from slct_workflows.values import (
    KEY_RULE, MAX_CAPACITY, NAME_RULE, ValueError_, fingerprint, is_capacity, is_key, is_name, to_json,
)


def _json(value: Any, what: str) -> Any:
    try:
        return to_json(value)
    except ValueError_ as exc:
        raise InvalidInput(f"{what} is not acceptable JSON: {exc}") from None


def _name(value: Any, what: str) -> str:
    if not is_name(value):
        raise InvalidInput(f"{what} must be {NAME_RULE}, got {value!r}")
    return value


def _lookup_key(value: Any) -> bool:
    """Can this be a primary key at all? (PostgreSQL rejects NUL in text: treat it as unknown.)"""
    return isinstance(value, str) and bool(value) and "\x00" not in value


# -- processes --------------------------------------------------------------------------------

@dataclass
class Started:
    process: ProcessInstance
    created: bool


def start_process(definition: str, input: Any = None, id: str | None = None, version: str | None = None) -> Started:
    """Start a process. With an `id` it is idempotent: the same id and input return the existing
    process (`created=False`); the same id with another definition or input is a Conflict.
    `version` starts that registered version of the definition (default: the latest); with an
    `id` of an existing process started on another version, it is a Conflict too."""
    if not isinstance(definition, str):
        raise InvalidInput("definition must be a string")
    if version is not None and not isinstance(version, str):
        raise InvalidInput("version must be a string")
    d = registry.get(definition, version)
    input = _json(input, "input")
    if id is not None:
        _name(id, "process id")

    def attempt() -> Started:
        with transaction.atomic():
            if id is not None:
                existing = ProcessInstance.objects.filter(pk=id).first()
                if existing is not None:
                    return _same_start(existing, definition, input, version)
            try:
                with transaction.atomic():
                    proc, main = create_process_rows(d, input, id)
            except IntegrityError:
                existing = ProcessInstance.objects.filter(pk=id).first()
                if existing is None:
                    raise
                return _same_start(existing, definition, input, version)
            dispatch.after_commit_wake([main.id])
            return Started(proc, True)

    return with_db_retries(attempt)


def _same_start(existing: ProcessInstance, definition: str, input: Any, version: str | None = None) -> Started:
    if existing.definition != definition or fingerprint(existing.input) != fingerprint(input):
        raise Conflict(
            f"process {existing.id!r} already exists with another "
            + ("definition" if existing.definition != definition else "input")
        )
    if version is not None and existing.version != version:
        raise Conflict(f"process {existing.id!r} already exists on version {existing.version!r}")
    return Started(existing, False)


def get_process(process_id: str) -> ProcessInstance:
    proc = ProcessInstance.objects.filter(pk=process_id).first() if _lookup_key(process_id) else None
    if proc is None:
        raise NotFound(f"unknown process {process_id!r}")
    return proc


def _locked_process(process_id: str) -> ProcessInstance:
    proc = ProcessInstance.objects.select_for_update().filter(pk=process_id).first() if _lookup_key(process_id) else None
    if proc is None:
        raise NotFound(f"unknown process {process_id!r}")
    return proc


def _operator_event(proc: ProcessInstance, kind: str, detail: dict | None = None) -> None:
    now = clock.now()
    proc.step_count += 1
    Event.objects.create(process=proc, seq=proc.step_count, kind=kind, detail=detail, started_at=now, finished_at=now)


def cancel_process(process_id: str, reason: str = "") -> ProcessInstance:
    """Cancel: every goroutine ends, pending cases go, a waiting parent is woken (closed)."""

    def attempt() -> ProcessInstance:
        with transaction.atomic():
            proc = _locked_process(process_id)
            if proc.status not in (ProcessStatus.RUNNING, ProcessStatus.FAILED):
                raise Conflict(f"process {process_id!r} is {proc.status}; only running or failed processes can be cancelled")
            locked = channels.lock([proc.result_channel] if proc.result_channel else [])
            now = clock.now()
            end_goroutines(proc, exclude=None, status=GoroutineStatus.CANCELLED)
            proc.set_status(ProcessStatus.CANCELLED)
            proc.finished_at = now
            lifecycle.process_ended(proc)
            if proc.result_channel:
                deliver_result(locked, proc, None, now, {"process": proc.id, "goroutine": ""}, done=False)
            _operator_event(proc, EventKind.CANCEL, {"reason": reason} if reason else None)
            proc.save()
            if proc.children.filter(status__in=[ProcessStatus.RUNNING, ProcessStatus.FAILED]).exists():
                # Children are cancelled after this commit, each in its own transaction (taking
                # their rows here would lock processes after channels, against the lock order).
                record_side_effect("slct_workflows.services.cancel_children", proc.id, process_id=proc.id)
            channels.wake_after_commit(locked)
            return proc

    return with_db_retries(attempt)


def cancel_children(process_id: str) -> int:
    """Cancel the running or failed children of a cancelled process (and theirs, in turn)."""
    cancelled = 0
    for child_id in ProcessInstance.objects.filter(
        parent_id=process_id, status__in=[ProcessStatus.RUNNING, ProcessStatus.FAILED]
    ).values_list("id", flat=True):
        try:
            cancel_process(child_id, reason=f"parent {process_id} was cancelled")
            cancelled += 1
        except Conflict:  # it finished meanwhile
            pass
    return cancelled


def retry_process(process_id: str) -> ProcessInstance:
    """Put a failed process back to work: its failed goroutines run their step again."""

    def attempt() -> ProcessInstance:
        with transaction.atomic():
            proc = _locked_process(process_id)
            if proc.status != ProcessStatus.FAILED:
                raise Conflict(f"process {process_id!r} is {proc.status}; only failed processes can be retried")
            now = clock.now()
            proc.set_status(ProcessStatus.RUNNING)
            proc.error = ""
            Goroutine.objects.filter(process=proc, status=GoroutineStatus.FAILED).update(
                status=GoroutineStatus.RUNNABLE, attempts=0, retry_at=None, last_error="", runnable_since=now
            )
            runnable = list(
                Goroutine.objects.filter(process=proc, status=GoroutineStatus.RUNNABLE).values_list("id", flat=True)
            )
            _operator_event(proc, EventKind.RETRY)
            proc.save()
            dispatch.after_commit_wake(runnable)
            return proc

    return with_db_retries(attempt)


def set_state(
    process_id: str, state: Any, *, expected_step_count: int | None = None, reason: str = ""
) -> ProcessInstance:
    """Edit a process's state: a deliberate operator action, recorded in the history with the
    state it replaced. The fields given replace those fields; fields left out keep their current
    values. Each value must fit its field's type in the definition's dataclass (state_schema), within
    REST's limits (nesting, storable JSON, SLCT_MAX_VALUE_BYTES): otherwise InvalidInput, and
    nothing changes. `expected_step_count` (the step the operator looked at) refuses the edit
    with a Conflict if the process has moved on since."""
    from slct_workflows import state_schema

    if not isinstance(state, dict):
        raise InvalidInput("state must be a JSON object of the definition's fields")
    try:
        state_schema.check_limits(state)
    except ValueError as exc:
        raise InvalidInput(f"state is not acceptable JSON: {exc}") from None
    state = _json(state, "state")  # size limit, and the stored (plain JSON) form of what was given

    def attempt() -> ProcessInstance:
        with transaction.atomic():
            proc = _locked_process(process_id)
            if proc.status not in (ProcessStatus.RUNNING, ProcessStatus.FAILED):
                raise Conflict(f"process {process_id!r} is {proc.status}; only running or failed processes can be edited")
            if expected_step_count is not None and proc.step_count != expected_step_count:
                raise Conflict(
                    f"process {process_id!r} has moved on (step {proc.step_count}, you saw {expected_step_count}); "
                    "reload and edit again"
                )
            try:
                definition = registry.for_process(proc.definition, proc.version)
            except NotFound as exc:
                raise Conflict(f"cannot edit the state: {exc}") from None
            try:
                state_schema.check_fields(definition.cls, state)
            except state_schema.StateError as exc:
                raise InvalidInput(f"the state does not fit {definition.cls.__name__}: {exc}") from None
            fields = definition.state_fields()
            merged = {k: v for k, v in (proc.state or {}).items() if k in fields}
            merged.update(state)
            try:
                normalized = to_json(definition.dump_state(definition.load_state(merged)))
            except ValueError_ as exc:
                raise InvalidInput(f"state is not acceptable JSON: {exc}") from None
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"the state does not load into {definition.cls.__name__}: {exc}") from None
            before, proc.state = proc.state, normalized
            _operator_event(proc, EventKind.STATE, {"reason": reason, "before": before, "fields": sorted(state)})
            proc.save()
            return proc

    return with_db_retries(attempt)


# -- channels ---------------------------------------------------------------------------------

def create_channel(name: str | None = None, capacity: int = 0) -> Channel:
    if not is_capacity(capacity):
        raise InvalidInput(f"capacity must be an integer from 0 to {MAX_CAPACITY}, got {capacity!r}")
    name = _name(name, "channel name") if name is not None else f"chan-{new_id()}"
    try:
        with transaction.atomic():
            if Channel.objects.filter(pk=name).exists():
                raise Conflict(f"channel {name!r} already exists")
            return Channel.objects.create(name=name, capacity=capacity)
    except IntegrityError:  # created by someone else between our check and our insert
        raise Conflict(f"channel {name!r} already exists") from None


def get_channel(name: str) -> Channel:
    chan = Channel.objects.filter(pk=name).first() if _lookup_key(name) else None
    if chan is None:
        raise NotFound(f"unknown channel {name!r}")
    return chan


@dataclass
class SendResult:
    key: str
    status: str  # delivered | buffered | waiting | no_receiver | received | closed
    channel: str
    repeated: bool = False
    send: ExternalSend | None = None


def send(
    channel: str, value: Any, key: str, *, wait: bool = True, create: bool = False, sender: Sender | None = None,
) -> SendResult:
    """Send `value` into `channel` from outside, at most once per idempotency `key`.

    `delivered`: a blocked receiver took it; `buffered`; `waiting`: held as a pending send until a
    receiver comes (only with wait=True); with wait=False and nobody ready, NoReceiver is raised and
    the refusal is remembered under the key. A closed channel raises ChannelClosed (nothing stored).
    `sender` is who sends as the door verified it (REST, Slack, admin): the channel's policy is
    checked against it (Forbidden, nothing stored) and it is recorded with the send; None is
    trusted server code.
    """
    _name(channel, "channel name")
    if not is_key(key):
        raise InvalidInput(f"an idempotency key ({KEY_RULE}) is required")
    value = _json(value, "value")
    fp = fingerprint(channel, value)
    provenance = sender.provenance() if sender is not None else None

    def attempt() -> SendResult:
        with transaction.atomic():
            # The policy first: a refused sender learns nothing, not even a repeated key's answer.
            row = Channel.objects.filter(pk=channel).first()
            if row is None and (not create or sender is not None):
                raise NotFound(f"unknown channel {channel!r}")
            if row is not None:
                access.check(row, sender, "send")
            previous = ExternalSend.objects.filter(pk=key).first()
            if previous is not None:
                return _repeat(previous, fp)
            locked = channels.lock([channel], create=create)
            if channel not in locked.rows:
                raise NotFound(f"unknown channel {channel!r}")
            seen: dict[str, str] = {}

            def evaluate() -> semantics.Decision:
                seen["outcome"], decision = semantics.external_send(locked.states[channel], value)
                return decision

            decision = channels.decide(locked, evaluate)
            outcome = seen["outcome"]
            if outcome == "closed":
                raise ChannelClosed(f"channel {channel!r} is closed")
            try:
                with transaction.atomic():
                    record = ExternalSend.objects.create(
                        key=key, channel=channel, value=value, fingerprint=fp, status=SendStatus.WAITING,
                        sender=provenance,
                    )
            except IntegrityError:  # the same key raced us and won
                return _repeat(ExternalSend.objects.get(pk=key), fp)
            now = clock.now()
            # Travels with the value to its receiver (the step's `next_source`, a buffered value's
            # source): what the server recorded of the sender, never anything from the value.
            source = {"external": key, **({"sender": provenance} if provenance else {})}
            if outcome == "blocked" and not wait:
                record.status = SendStatus.NO_RECEIVER
            elif outcome == "blocked":
                PendingCase.objects.create(external_send=record, kind="send", channel_id=channel, value=value)
            else:
                channels.apply(locked, decision, now, source)
                record.status = SendStatus.DELIVERED if outcome == "delivered" else SendStatus.BUFFERED
                if decision.fires:
                    record.delivered_at = now
                    who = locked.owners.get(decision.fires[0].waiter.owner, {})
                    record.delivered_to = f"{who.get('process', '')}/{who.get('goroutine', '')}"
            record.save()
            Event.objects.create(
                process=None, kind=EventKind.SEND, channel=channel, value=value, source=source,
                detail={"status": record.status, "to": record.delivered_to}, started_at=now, finished_at=now,
            )
            channels.wake_after_commit(locked)
            result = SendResult(key=key, status=record.status, channel=channel, send=record)
        if result.status == SendStatus.NO_RECEIVER:
            raise NoReceiver(f"no receiver is waiting on channel {channel!r}")
        return result

    return with_db_retries(attempt)


def _repeat(previous: ExternalSend, fp: str) -> SendResult:
    if previous.fingerprint != fp:
        raise Conflict(f"idempotency key {previous.key!r} was already used for another send")
    if previous.status == SendStatus.NO_RECEIVER:
        raise NoReceiver(f"no receiver is waiting on channel {previous.channel!r} (repeated key)")
    return SendResult(key=previous.key, status=previous.status, channel=previous.channel, repeated=True, send=previous)


def get_send(key: str) -> ExternalSend:
    record = ExternalSend.objects.filter(pk=key).first() if _lookup_key(key) else None
    if record is None:
        raise NotFound(f"unknown send {key!r}")
    return record


def close_channel(name: str, *, sender: Sender | None = None) -> bool:
    """Close a channel: blocked receivers and senders fire with `closed`. False if already closed.
    `sender` as for `send` (a private channel cannot be closed from outside)."""
    _name(name, "channel name")
    provenance = sender.provenance() if sender is not None else None

    def attempt() -> bool:
        with transaction.atomic():
            locked = channels.lock([name])
            if name not in locked.rows:
                raise NotFound(f"unknown channel {name!r}")
            access.check(locked.rows[name], sender, "close")
            now = clock.now()
            source = {"external": "close", **({"sender": provenance} if provenance else {})}
            changed = channels.close(locked, name, now, source)
            if changed:
                Event.objects.create(kind=EventKind.CLOSE, channel=name, source=source,
                                     started_at=now, finished_at=now)
            channels.wake_after_commit(locked)
            return changed

    return with_db_retries(attempt)


# -- side effects ---------------------------------------------------------------------------

def record_side_effect(func: str, *args: Any, process_id: str | None = None, **kwargs: Any) -> int:
    """An outbox row in the current transaction, run once after commit by an RQ job (retried with
    backoff; the sweep finds lost ones). The same mechanism as `p.on_commit`, for code outside a
    step (Slack views, admin actions)."""
    row = Outbox.objects.create(
        process_id=process_id, func=func, args=_json(list(args), "side-effect args"),
        kwargs=_json(kwargs, "side-effect kwargs"),
    )
    dispatch.after_commit_outbox([row.id])
    return row.id


# -- recovery ---------------------------------------------------------------------------------

@dataclass
class SweepReport:
    runnable: int = 0
    timers: int = 0
    outbox: int = 0


@dataclass
class SweepFinds:
    """What a sweep at `now` re-enqueues, as querysets (the sweep, and the dashboard's preview)."""

    runnable: Any  # QuerySet[Goroutine]: runnable past the grace period, not waiting for a retry
    timers: Any  # QuerySet[PendingCase]: due timers of blocked goroutines
    outbox: Any  # QuerySet[Outbox]: pending side effects past the grace period, not delayed


def sweep_finds(now: Any, grace: timedelta) -> SweepFinds:
    return SweepFinds(
        runnable=Goroutine.objects.filter(
            status=GoroutineStatus.RUNNABLE, process__status=ProcessStatus.RUNNING, runnable_since__lte=now - grace,
        ).exclude(retry_at__gt=now),
        timers=PendingCase.objects.due_timers(now),
        outbox=Outbox.objects.filter(status=OutboxStatus.PENDING, created_at__lte=now - grace)
        .exclude(not_before__gt=now),
    )


def sweep(grace_seconds: float | None = None) -> SweepReport:
    """Re-enqueue what Redis may have lost: runnable goroutines idle past the grace period,
    blocked goroutines whose timer is due, and pending outbox rows. Idempotent: every job it
    enqueues does nothing if the work was already done."""
    grace = timedelta(seconds=conf.sweep_grace() if grace_seconds is None else grace_seconds)
    finds = sweep_finds(clock.now(), grace)
    runnable = list(finds.runnable.values_list("id", flat=True))
    due_timers = list(finds.timers.values_list("goroutine_id", flat=True).distinct())
    outbox = list(finds.outbox.values_list("id", flat=True))
    d = dispatch.get()
    try:
        d.wake(sorted(set(runnable) | set(due_timers)))
        d.outbox(outbox)
    except Exception as exc:  # redis.ConnectionError and friends: nothing was changed
        raise QueueUnavailable(f"the job queue (Redis) is unavailable: {exc}") from exc
    return SweepReport(runnable=len(runnable), timers=len(due_timers), outbox=len(outbox))


# -- the runaway guard ------------------------------------------------------------------------

def resume_process(process_id: str) -> ProcessInstance:
    """Resume the goroutines the runaway guard paused (DESIGN 2.9): each becomes runnable again
    with its count of fires in a row reset, and runs the step its last select fired (nothing it
    received is lost). A RESUME event records which goroutines and why they had been paused. If
    the cause is still there, the guard pauses it again after SLCT_RUNAWAY_STEPS fires."""

    def attempt() -> ProcessInstance:
        with transaction.atomic():
            proc = _locked_process(process_id)
            if proc.status != ProcessStatus.RUNNING:
                raise Conflict(f"process {process_id!r} is {proc.status}; only running processes can be resumed")
            paused = list(
                Goroutine.objects.select_for_update().filter(process=proc, status=GoroutineStatus.PAUSED).order_by("id")
            )
            if not paused:
                raise Conflict(f"process {process_id!r} has no paused goroutines")
            now = clock.now()
            reasons = {}
            for g in paused:
                reasons[g.name] = g.paused_reason
                g.set_status(GoroutineStatus.RUNNABLE)
                g.hot_steps, g.paused_reason, g.runnable_since = 0, "", now
                g.save(update_fields=["status", "hot_steps", "paused_reason", "runnable_since", "updated_at"])
            _operator_event(proc, EventKind.RESUME, {"goroutines": list(reasons), "reasons": reasons})
            proc.save()
            dispatch.after_commit_wake([g.id for g in paused])
            return proc

    return with_db_retries(attempt)
