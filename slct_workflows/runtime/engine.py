"""One step in one transaction.

lock the process row -> load state -> call the method -> lock the channels it
touches (sorted) -> apply closes, new goroutines, the select (firing counterparts, locked and
re-checked) or finish -> save state, history event, outbox -> commit -> enqueue wake-ups.

A wake-up is consumed by the commit that uses it: a duplicate job finds the goroutine no longer
runnable (or not yet due for retry) and does nothing. A method that raises rolls the whole
transaction back (its own ORM writes included); the failure is recorded in a second one.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterator

from django.db import transaction
from django.db.models import Subquery

from slct_workflows import clock, conf, hooks, semantics
from slct_workflows.definitions import Definition, accepts_value, registry, value_decoder
from slct_workflows.errors import DeclarationError, NotFound
from slct_workflows.models import (
    GOROUTINE_LIVE,
    Channel,
    Event,
    EventKind,
    Goroutine,
    GoroutineStatus,
    NextKind,
    Outbox,
    PendingCase,
    ProcessInstance,
    ProcessStatus,
    SendPolicy,
    new_id,
)
from slct_workflows.policy import ChannelPolicy
from slct_workflows.process import Process
from slct_workflows.runtime import channels, dispatch, lifecycle
from slct_workflows.runtime.db import is_transient, with_db_retries
from slct_workflows.runtime.fixed_sql import (
    FixedInsert,
    FixedQuery,
    FixedSave,
    defer,
    deferring,
    execute_together,
    read_together,
)
from slct_workflows.runtime.lifecycle import deliver_result, end_goroutines
from slct_workflows.runtime.runnable import Next, cleared_fields, next_fields
from slct_workflows.values import ValueError_, to_json

log = logging.getLogger("slct_workflows")


HOT_STEPS_MAX = 2**31 - 1  # the column's range: with the runaway guard off the count stops there


@dataclass
class StepResult:
    ran: bool
    runnable_again: bool = False  # the goroutine's select fired at once: it can run another step
    woken: tuple[int, ...] = ()
    blocked: bool = False  # the goroutine is blocked: only a due timer can make it run
    failed: bool = False  # the method raised: the step rolled back and its failure was recorded
    runnable_since: datetime | None = None  # when the step's goroutine became runnable (wake-up latency)


class StepFailed(Exception):
    """The step's method (or its declarations) raised; its transaction has been rolled back."""

    def __init__(self, exc: BaseException, tb: str, *, deterministic: bool, wait_seq: int, attempts: int) -> None:
        super().__init__(str(exc))
        self.exc, self.tb, self.deterministic = exc, tb, deterministic
        self.wait_seq, self.attempts = wait_seq, attempts


# -- the step ---------------------------------------------------------------------------------

def run_step(goroutine_id: int) -> StepResult:
    try:
        return with_db_retries(lambda: _step(goroutine_id))
    except StepFailed as exc:
        failure = exc
    return record_failure(goroutine_id, failure)


def record_failure(goroutine_id: int, failure: StepFailed) -> StepResult:
    """Record a failed step in a transaction of its own: the failed step left nothing behind,
    not even writes the user's method made through the ORM."""
    return with_db_retries(lambda: _record_failure(goroutine_id, failure))


class _Group(threading.local):
    events: list[Event] | None = None  # the open group's history events, written at its COMMIT
    last: bool = False  # the running step is the group's last: its writes carry the group's events


_group = _Group()


@contextmanager
def deferring_events() -> Iterator[list[Event]]:
    """Inside (a group commit, runtime/group.py), steps add their history events to the yielded
    list instead of inserting them, and leave their wake-ups to the caller (StepResult.woken)."""
    previous, _group.events = _group.events, []
    try:
        yield _group.events
    finally:
        _group.events = previous


def group_events_ending_now() -> list[Event]:
    """The open group's events, to be written now: each ends now (its step's writes go to the
    COMMIT now; a step early in the group waited for the later ones). The group forgets them
    once the step that wrote them is kept."""
    events = list(_group.events or [])
    now = clock.now()
    for event in events:
        event.finished_at = max(now, event.started_at)
    return events


def step_in_group(goroutine_id: int, *, last: bool = False) -> StepResult:
    """One step inside the caller's transaction (a savepoint of a group): no retries here, a
    method that raises raises StepFailed. The `last` step of a group writes the group's history
    events with its own last writes (`finished_at` taken then)."""
    _group.last = last
    try:
        return _step_body(goroutine_id)
    finally:
        _group.last = False


_LOCK_PROCESS = FixedQuery(
    lambda gid: ProcessInstance.objects.select_for_update(of=("self",)).filter(goroutines__id=gid)[:1]
)
# The goroutines of the goroutine's process (its process_id never changes), read right after the
# process lock in the same round trip (fixed_sql.read_together): that statement starts after the
# lock is held, so it sees what the previous lock holder committed.
_GOROUTINES = FixedQuery(
    lambda gid: Goroutine.objects.filter(
        process_id=Subquery(Goroutine.objects.filter(pk=gid).values("process_id")[:1])
    )
)
# A step never changes what a process or goroutine was created with: not written again.
_SAVE_PROCESS = FixedSave(ProcessInstance, fixed=("definition", "version", "input", "parent", "result_channel",
                                                  "created_at"))
_SAVE_GOROUTINE = FixedSave(Goroutine, fixed=("process", "name", "created_at"))
_INSERT_CASES = FixedInsert(PendingCase)
_INSERT_EVENT = FixedInsert(Event)


def _lock_process(goroutine_id: int) -> tuple[ProcessInstance, Goroutine, list[Goroutine]] | None:
    # The goroutines are not locked: under the process lock nothing else changes a runnable
    # goroutine (counterparts only fire blocked ones), and locking them would invert the lock order.
    found, goroutines = read_together((_LOCK_PROCESS, (goroutine_id,)), (_GOROUTINES, (goroutine_id,)))
    if not found:
        return None
    proc = found[0]
    g = next(x for x in goroutines if x.id == goroutine_id)
    return proc, g, goroutines


def _step(goroutine_id: int) -> StepResult:
    with transaction.atomic():
        return _step_body(goroutine_id)


def _step_body(goroutine_id: int) -> StepResult:
    # The step's writes wait for its next statement (fixed_sql.deferring): a counterpart's
    # firing, buffer edits and pending cases travel with the step's last writes.
    with deferring():
        locked = _lock_process(goroutine_id)
        if locked is None:
            return StepResult(ran=False)
        proc, g, goroutines = locked
        now = clock.now()
        if proc.status != ProcessStatus.RUNNING:
            return StepResult(ran=False)
        if g.status != GoroutineStatus.RUNNABLE:
            return StepResult(ran=False, blocked=g.status == GoroutineStatus.BLOCKED)
        if g.retry_at and g.retry_at > now:
            return StepResult(ran=False)
        return Step(proc, g, now, goroutines).run()


def _record_failure(goroutine_id: int, failure: StepFailed) -> StepResult:
    with transaction.atomic(), deferring():
        locked = _lock_process(goroutine_id)
        if locked is None:
            return StepResult(ran=False)
        proc, g, goroutines = locked
        if (proc.status != ProcessStatus.RUNNING or g.status != GoroutineStatus.RUNNABLE
                or g.wait_seq != failure.wait_seq or g.attempts != failure.attempts):
            return StepResult(ran=False)  # a duplicate job got here first
        return Step(proc, g, clock.now(), goroutines).failed(failure)


class Step:
    def __init__(self, proc: ProcessInstance, g: Goroutine, now: datetime, goroutines: list[Goroutine]) -> None:
        self.proc, self.g, self.now = proc, g, now
        self.goroutine_names = {x.name for x in goroutines}
        # Read under the process lock: only this process's steps and services (which take that
        # lock) end goroutines, so whether any other is still live cannot change under us.
        self.others_live = any(x.id != g.id and x.status in GOROUTINE_LIVE for x in goroutines)
        self.started_goroutines = False  # this step ran p.go(...)
        self.paused = ""  # the runaway guard paused the goroutine in this step: why
        self.started = time.perf_counter()
        self.runnable_since = g.runnable_since  # read before the step overwrites it
        self.woken: list[int] = []
        self.detail: dict[str, Any] = {}
        self.source = {"process": proc.id, "goroutine": g.name, "seq": proc.step_count + 1}
        # What this step runs; the goroutine's next_* fields are overwritten by its new select.
        self.ran = {"method": g.next_method, "case": g.next_case, "channel": g.next_channel, "value": g.next_value,
                    "source": g.next_source}

    def run(self) -> StepResult:
        proc, g = self.proc, self.g
        try:
            definition = registry.for_process(proc.definition, proc.version)
            instance = definition.load_state(proc.state)
            p = Process(
                process_id=proc.id, definition=proc.definition, goroutine=g.name, method=g.next_method,
                instance=instance, now=self.now, closed=g.next_closed, existing_goroutines=self.goroutine_names,
            )
            self._call(definition, instance, p)
            state = self._encode_state(definition, instance, p)
            runnable_again = self._apply(definition, p, state)
        except Exception as exc:
            if is_transient(exc):
                raise  # deadlock, serialization failure, lost connection: retry the whole transaction
            raise StepFailed(
                exc, traceback.format_exc(), deterministic=isinstance(exc, (DeclarationError, NotFound)),
                wait_seq=g.wait_seq, attempts=g.attempts,
            ) from exc
        woken = tuple(dict.fromkeys((*self.locked.woken, *self.woken)))
        if _group.events is None:  # in a group the caller enqueues them, after its COMMIT
            dispatch.after_commit_wake(woken)
        return StepResult(ran=True, runnable_again=runnable_again, woken=woken, runnable_since=self.runnable_since)

    def _call(self, definition: Definition, instance: Any, p: Process) -> None:
        g = self.g
        if not definition.has_method(g.next_method):
            raise DeclarationError(
                f"process {self.proc.definition} {self.proc.id}, goroutine {g.name}: "
                f"method {g.next_method!r} does not exist in {definition.cls.__name__}"
            )
        func = getattr(instance, g.next_method)
        value = g.next_value
        decoder = value_decoder(func)
        if decoder is not None:
            value = decoder(value, g.next_source, g.next_closed)
        if accepts_value(func):
            func(p, value)
        else:
            func(p)
        if p.decls.open_cases:
            raise p.declaration_error("a select case was started without .to(method)")
        if p.decls.call is not None and not p.decls.call.target:
            raise p.declaration_error("call() without .to(method)")
        if p.decls.cases == [] and p.decls.call is None:
            # Go's `select {}` blocks forever; a goroutine that may never run again is a bug here,
            # not a wait: refused, rather than ending the goroutine as "no select" would.
            raise p.declaration_error("select() with no cases (Go's `select {}` blocks forever); "
                          "to end the goroutine, declare no select at all")

    def _encode_state(self, definition: Definition, instance: Any, p: Process) -> dict:
        try:
            return to_json(definition.dump_state(instance))
        except ValueError_ as exc:
            raise p.declaration_error(f"the state is not JSON: {exc}") from None

    # -- applying the declarations -----------------------------------------------------------
    def _apply(self, definition: Definition, p: Process, state: dict) -> bool:
        proc, g, d = self.proc, self.g, p.decls
        cases = list(d.cases or [])
        if d.call is not None:
            cases = [self._start_child(p)]
        names = {c.channel for c in cases if c.channel} | set(d.closes) | {m[0] for m in d.made}
        finishing = d.finished
        if proc.result_channel:
            names.add(proc.result_channel)  # this step may end the process and answer its parent
        self._make_channels(p, d.made)
        self.locked = locked = channels.lock(names, create=True)

        for name in d.closes:
            if channels.close(locked, name, self.now, self.source):
                self._note("closed", name)

        for go in d.gos:
            started = Next(go.method, NextKind.GO, value=go.arg, source={"process": proc.id, "goroutine": g.name})
            new = Goroutine.objects.create(process=proc, name=go.name, **next_fields(started, self.now))
            self.woken.append(new.id)
            self._note("started", go.name)

        self.started_goroutines = bool(d.gos)
        runnable_again = False
        if finishing:
            self._finish(d.output, locked)
            fired_label = "finish"
        elif cases:
            runnable_again, fired_label = self._select(cases, locked)
            if runnable_again and self._runaway():
                runnable_again = False
                fired_label += "; paused by the runaway guard"
        else:
            g.set_status(GoroutineStatus.DONE)
            fired_label = "end"
            if not self.others_live and not d.gos:
                self._finish(None, locked)  # the last goroutine ended: the process is done
        self.detail["next"] = fired_label

        outbox_ids = [
            Outbox.objects.create(process=proc, func=c.func, args=c.args, kwargs=c.kwargs).id for c in d.on_commit
        ]
        dispatch.after_commit_outbox(outbox_ids)

        proc.state = state
        self._save_step(EventKind.STEP)
        return runnable_again

    def _make_channels(self, p: Process, made: list[tuple[str, int, ChannelPolicy]]) -> None:
        if not made:
            return
        for name, _, _ in made:
            if Channel.objects.filter(pk=name).exists():
                raise p.declaration_error(f"make_chan: channel {name!r} already exists")
        channels.make([
            Channel(name=name, capacity=capacity, owner=self.proc.id, policy=policy.policy,
                    send_permission=policy.permission, send_group=policy.group)
            for name, capacity, policy in made
        ])

    def _start_child(self, p: Process) -> semantics.Case:
        call = p.decls.call
        try:
            child_def = registry.get(call.definition)
        except NotFound as exc:
            raise p.declaration_error(str(exc)) from None
        if call.id and ProcessInstance.objects.filter(pk=call.id).exists():
            raise p.declaration_error(f"call(): a process with id {call.id!r} already exists")
        child_id = call.id or new_id()
        result_channel = f"result-{child_id}"
        if Channel.objects.filter(pk=result_channel).exists():
            raise p.declaration_error(f"call(): channel {result_channel!r} already exists; choose another child id")
        # Private: only the child's last step (or its cancellation) answers the parent.
        channels.make([Channel(name=result_channel, capacity=1, owner=self.proc.id, policy=SendPolicy.PRIVATE)])
        child, main = lifecycle.create_process_rows(
            child_def, call.input, child_id, parent=self.proc, result_channel=result_channel, now=self.now
        )
        self.woken.append(main.id)
        self._note("called", child.id)
        return semantics.Case(kind=semantics.RECV, target=call.target, channel=result_channel)

    def _select(self, cases: list[semantics.Case], locked: channels.LockedChannels) -> tuple[bool, str]:
        g = self.g
        owner = channels.goroutine_owner(g.id)
        decision = channels.decide(
            locked, lambda: semantics.evaluate_select(cases, locked.states, self.now, owner=owner)
        )
        if decision.blocked:
            g.set_status(GoroutineStatus.BLOCKED)
            g.hot_steps = 0  # it waits for someone: not a runaway
            g.wait_seq += 1
            _assign(g, cleared_fields())
            defer(_INSERT_CASES.statement([
                PendingCase(
                    goroutine=g, wait_seq=g.wait_seq, case_index=i, kind=c.kind, channel_id=c.channel,
                    value=c.value if c.kind == semantics.SEND else None, deadline=c.deadline, target=c.target,
                )
                for i, c in enumerate(cases)
            ]))
            deadlines = [c.deadline for c in cases if c.kind == semantics.TIMER]
            if deadlines:
                dispatch.after_commit_timers_at(min(deadlines))
            described = tuple(c.describe() for c in cases)
            if hooks.wanted(hooks.GoroutineBlocked):
                hooks.emit([hooks.GoroutineBlocked(
                    process_id=self.proc.id, goroutine=g.name, goroutine_id=g.id, cases=described,
                    deadline=min(deadlines) if deadlines else None,
                )])
            return False, "blocked on " + ", ".join(described)
        case = cases[decision.case_index]
        source = None
        for fire in decision.fires:
            if fire.waiter.op == "send" and case.kind == semantics.RECV:
                source = locked.owners.get(fire.waiter.owner)
        popped = channels.apply(locked, decision, self.now, self.source)
        if case.kind == semantics.RECV and decision.pops:
            source = popped[0]  # the value came out of the buffer: its sender
        elif case.kind == semantics.TIMER:
            source = {"timer": case.deadline.isoformat()}  # as when the timer loop fires it
        if self._fired_on_its_own(case, decision, source) and g.hot_steps < HOT_STEPS_MAX:
            g.hot_steps += 1
        for fire in decision.fires:
            if fire.waiter.owner[0] == "g":
                self._note("woke", fire.waiter.owner[1])
        g.wait_seq += 1
        _assign(g, next_fields(Next(
            case.target, case.kind, channel=case.channel or "", at=case.deadline if case.kind == semantics.TIMER else None,
            value=decision.value if case.kind == semantics.RECV else None, closed=decision.closed, source=source,
        ), self.now))
        by = channels.fired_by(case.kind, decision.closed, source)
        if hooks.wanted(hooks.SelectFired, by):
            hooks.emit([hooks.SelectFired(
                process_id=self.proc.id, goroutine=g.name, goroutine_id=g.id, kind=case.kind,
                channel=case.channel or "", method=case.target, by=by, source=source, closed=decision.closed,
            )])
        return True, "fired " + g.next_case

    # -- the runaway guard (DESIGN 2.9, docs/OPERATIONS.md "Runaway goroutines") --------------
    def _fired_on_its_own(self, case: semantics.Case, decision: semantics.Decision, source: dict | None) -> bool:
        """Did the select fire at once with nobody else taking part? A default, a timer already
        due, a closed channel, or a value this goroutine buffered itself: nothing outside it has
        to happen for the next one to fire too. A value another goroutine or the outside sent
        (a buffer being drained, a sender waiting), a receiver waiting, or room in a buffer is
        work between parties, and never counts (a consumer behind a busy channel fires at once
        for as long as its producers keep up)."""
        if case.kind in (semantics.DEFAULT, semantics.TIMER) or decision.closed:
            return True
        if case.kind == semantics.RECV and decision.pops and isinstance(source, dict):
            return source.get("process") == self.proc.id and source.get("goroutine") == self.g.name
        return False

    def _runaway(self) -> bool:
        """At the limit (conf.runaway_steps fires on its own in a row), pause the goroutine in
        this step's transaction: its fired select is kept (next_method, value) for the resume.
        With conf.runaway_rate set, a streak slower than that rate starts a new count instead."""
        g = self.g
        limit = conf.runaway_steps()
        if not limit or g.hot_steps < limit:
            return False
        rate = conf.runaway_rate()
        seconds = None
        if rate:
            seconds = self._streak_seconds(limit)
            if seconds is not None and seconds > 0 and (limit - 1) / seconds < rate:
                g.hot_steps = 0  # busy but slow (each step does real work): a new window
                return False
        g.set_status(GoroutineStatus.PAUSED)
        speed = f" in {seconds:.1f} s" if seconds else ""
        self.paused = g.paused_reason = (
            f"runaway: the select of goroutine {g.name} fired at once {g.hot_steps} times in a row{speed} "
            f"without waiting for anything (last: {g.next_case}, then {g.next_method}); "
            f"the limit is SLCT_RUNAWAY_STEPS={limit}. Fix the workflow or what it waits on, then resume it."
        )
        self._note("paused", g.name)
        if hooks.wanted(hooks.GoroutinePaused):
            hooks.emit([hooks.GoroutinePaused(process_id=self.proc.id, goroutine=g.name, goroutine_id=g.id,
                                              reason=self.paused)])
        log.warning("process %s: goroutine %s paused by the runaway guard (%s fires in a row, last %s)",
                    self.proc.id, g.name, g.hot_steps, g.next_case)
        return True

    def _streak_seconds(self, limit: int) -> float | None:
        """Seconds from the start of this goroutine's `limit`-th last step (this one included; its
        event is not written yet) to the start of this one. A query only at the limit."""
        if limit < 2:
            return None
        # The open group's events are not written yet: the newest of the streak may be there.
        unwritten = [e.started_at for e in reversed(_group.events or [])
                     if e.process_id == self.proc.id and e.goroutine == self.g.name and e.kind == EventKind.STEP]
        back = limit - 2
        if back < len(unwritten):
            return (self.now - unwritten[back]).total_seconds()
        back -= len(unwritten)
        first = list(
            Event.objects.filter(process_id=self.proc.id, goroutine=self.g.name, kind=EventKind.STEP)
            .order_by("-seq").values_list("started_at", flat=True)[back: back + 1]
        )
        return (self.now - first[0]).total_seconds() if first else None

    def _finish(self, output: Any, locked: channels.LockedChannels) -> None:
        proc, g = self.proc, self.g
        proc.set_status(ProcessStatus.DONE)
        proc.output = output
        proc.finished_at = self.now
        lifecycle.process_ended(proc)
        if g.status != GoroutineStatus.DONE:
            g.set_status(GoroutineStatus.DONE)
        if self.others_live or self.started_goroutines:
            end_goroutines(proc, exclude=g.pk, status=GoroutineStatus.CANCELLED)
        if proc.result_channel:
            deliver_result(locked, proc, output, self.now, self.source, done=True)

    def _note(self, key: str, value: Any) -> None:
        self.detail.setdefault(key, []).append(value)

    def _save_step(self, kind: str, error: str = "", tb: str = "") -> None:
        proc, g = self.proc, self.g
        proc.step_count += 1
        ran = self.ran
        event = Event(
            process=proc, seq=proc.step_count, kind=kind, goroutine=g.name, method=ran["method"],
            case=ran["case"], channel=ran["channel"], value=ran["value"], source=ran["source"],
            detail=self.detail or None, error=error, traceback=tb,
            started_at=self.now, finished_at=self.now + timedelta(seconds=time.perf_counter() - self.started),
        )
        if g.status != GoroutineStatus.RUNNABLE:
            g.runnable_since = None
        if kind == EventKind.STEP:
            g.attempts, g.retry_at, g.last_error = 0, None, ""
        events = [event]
        if self.paused:  # the runaway guard stopped the goroutine: its own history event
            proc.step_count += 1
            events.append(Event(
                process=proc, seq=proc.step_count, kind=EventKind.PAUSE, goroutine=g.name,
                detail={"next": "paused by the runaway guard", "reason": self.paused, "hot_steps": g.hot_steps,
                        "then": g.next_method, "case": g.next_case},
                started_at=event.finished_at, finished_at=event.finished_at,
            ))
        # The step's last writes go together: one round trip on PostgreSQL (fixed_sql.execute_together).
        if _group.events is not None:  # a group commit writes its events together, at its COMMIT
            _group.events.extend(events)
            events = []
            if _group.last:
                events = group_events_ending_now()
        with _SAVE_PROCESS.saving(proc) as proc_row, _SAVE_GOROUTINE.saving(g) as goroutine_row:
            execute_together([proc_row, goroutine_row, *([_INSERT_EVENT.statement(events)] if events else [])])

    # -- failures ----------------------------------------------------------------------------
    def failed(self, failure: StepFailed) -> StepResult:
        proc, g = self.proc, self.g
        exc, tb, deterministic = failure.exc, failure.tb, failure.deterministic
        g.attempts += 1
        g.last_error = f"{type(exc).__name__}: {exc}"
        give_up = deterministic or g.attempts >= conf.max_attempts()
        self.detail = {"attempt": g.attempts, "max_attempts": conf.max_attempts()}
        if give_up:
            g.set_status(GoroutineStatus.FAILED)
            proc.set_status(ProcessStatus.FAILED)
            proc.error = f"goroutine {g.name}, method {g.next_method}: {g.last_error}\n\n{tb}"
            proc.finished_at = self.now  # retention counts a failed process's age from here
            lifecycle.process_ended(proc)
            kind = EventKind.FAILED
            log.error("process %s failed: %s", proc.id, g.last_error)
        else:
            delay = conf.retry_backoff() * (2 ** (g.attempts - 1))
            g.retry_at = self.now + timedelta(seconds=delay)
            dispatch.after_commit_wake_at(g.id, g.retry_at)
            kind = EventKind.ERROR
            self.detail["retry_at"] = g.retry_at.isoformat()
        self._save_step(kind, error=g.last_error, tb=tb)
        return StepResult(ran=True, failed=True)


def _assign(g: Goroutine, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        setattr(g, name, value)


