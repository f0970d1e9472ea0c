"""Test helpers: run processes to quiescence in-process, with a clock you move by hand.

    from slct_workflows.testing import WorkflowRunner

    def test_counter(db):
        with WorkflowRunner() as run:
            pid = run.start("counter", {"idle_seconds": 3600})
            run.send("counter", 1)
            run.assert_waits(pid, Main=["recv counter", "timer"])
            run.advance(hours=1)
            run.assert_finished(pid, {"count": 1})

The same engine and one transaction per step as in production; no Redis. Work is found by
polling the database (runnable goroutines, due timers, pending outbox rows), exactly what the
recovery sweep looks for, so the helper also works inside a test's wrapping transaction
(`django.test.TestCase`, pytest-django's `db`).

The clock is frozen while the runner is active (at `now=`, or at the moment it was entered) and
moves only when you call `advance()`, so `after(timedelta(hours=1))` fires exactly when the test
says so and `p.now()` is predictable.

With pytest, the `workflow_runner` and `workflow_registry` fixtures come from
`slct_workflows.pytest_plugin` (add `pytest_plugins = ["slct_workflows.pytest_plugin"]` to your
root conftest.py).
"""
from __future__ import annotations

import contextlib
import itertools
import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Iterator

from django.db.models import Q
from django.utils import timezone

from slct_workflows import clock, services
from slct_workflows.definitions import Registry, registry
from slct_workflows.models import (
    Event,
    EventKind,
    Goroutine,
    GoroutineStatus,
    Outbox,
    OutboxStatus,
    PendingCase,
    ProcessInstance,
    ProcessStatus,
)
from slct_workflows.runtime import channels, dispatch
from slct_workflows.workers import jobs

__all__ = ["WorkflowRunner", "Stuck", "NullDispatcher", "isolated_registry", "forget"]


class NullDispatcher:
    """Drops wake-ups: the runner finds the work in the database instead."""

    def wake(self, goroutine_ids: list[int], at_front: bool = False) -> None:
        pass

    def wake_at(self, goroutine_id: int, when: datetime) -> None:
        pass

    def timers_at(self, when: datetime) -> None:
        pass

    def outbox(self, outbox_ids: list[int]) -> None:
        pass

    def outbox_at(self, outbox_id: int, when: datetime) -> None:
        pass


class Stuck(AssertionError):
    """The processes did not come to rest: something loops without ever waiting."""


# -- the registry ---------------------------------------------------------------------------------

@contextlib.contextmanager
def isolated_registry(*, empty: bool = False) -> Iterator[Registry]:
    """Definitions registered inside the block are gone after it (the previous ones come back).

        with isolated_registry():
            @register("expense", version="2")
            @dataclass
            class ExpenseV2: ...

    `empty=True` starts the block with no definitions at all.
    """
    saved = registry.snapshot()
    if empty:
        registry.restore(({}, {}))
    try:
        yield registry
    finally:
        registry.restore(saved)


def forget(name: str, version: str | None = None) -> None:
    """Unregister a definition (all versions, or one), as if its code had been deleted.
    Use it inside `isolated_registry()` so it comes back after the test."""
    registry.remove(name, version)


# -- the runner -----------------------------------------------------------------------------------

class WorkflowRunner:
    """Drive processes in a test: start, send, close, advance the clock; look and assert.

    Every driving call (`start`, `send`, `close`, `advance`, ...) runs everything that became
    runnable or due until the processes rest (each goroutine blocked or finished).
    """

    def __init__(self, *, max_steps: int = 10_000, run_outbox: bool = True, now: datetime | None = None,
                 freeze: bool = True) -> None:
        """`run_outbox=False` leaves `p.on_commit` effects (and Slack calls) pending, to assert on
        with `outbox()` instead of performing them. `now` sets the frozen starting time;
        `freeze=False` lets the clock follow the wall clock (plus whatever you advance)."""
        if now is not None and timezone.is_naive(now):
            raise ValueError("WorkflowRunner(now=...) needs a timezone-aware datetime")
        self.max_steps = max_steps
        self.run_outbox = run_outbox
        self.freeze = freeze
        self._start_time = now
        self._keys = itertools.count(1)
        self._previous: dispatch.Dispatcher | None = None
        self._previous_now = None

    def __enter__(self) -> "WorkflowRunner":
        self._previous = dispatch.use(NullDispatcher())
        clock.reset()
        if self.freeze:
            frozen = self._start_time or timezone.now()
            self._previous_now = clock.use(lambda: frozen)
        return self

    def __exit__(self, *exc: Any) -> None:
        dispatch.use(self._previous)
        if self._previous_now is not None:
            clock.use(self._previous_now)
        clock.reset()

    # -- driving ---------------------------------------------------------------------------
    def run(self) -> int:
        """Run every runnable goroutine, due timer and due outbox job until nothing is left.
        Returns the number of steps run."""
        steps = 0
        per_process: Counter[str] = Counter()
        while True:
            now = clock.now()
            runnable = list(
                Goroutine.objects.filter(status=GoroutineStatus.RUNNABLE, process__status=ProcessStatus.RUNNING)
                .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
                .order_by("runnable_since", "id").values_list("id", "process_id")
            )
            timers = list(
                PendingCase.objects.due_timers(now).filter(goroutine__process__status=ProcessStatus.RUNNING)
                .order_by("deadline", "id").values_list("goroutine_id", "goroutine__process_id")
            )
            outbox = list(
                Outbox.objects.filter(status=OutboxStatus.PENDING).filter(
                    Q(not_before__isnull=True) | Q(not_before__lte=now)
                ).values_list("id", flat=True)
            ) if self.run_outbox else []
            if not (runnable or timers or outbox):
                return steps
            seen: set[int] = set()
            for gid, pid in [*runnable, *timers]:
                if gid in seen:
                    continue
                seen.add(gid)
                n = jobs.wake(gid)
                steps += n
                per_process[pid] += n
            for oid in outbox:
                jobs.run_outbox(oid)
            if steps > self.max_steps:
                busiest = per_process.most_common(3)
                raise Stuck(
                    f"more than {self.max_steps} steps without coming to rest: a process loops without waiting "
                    f"(a select with default(), or a goroutine that keeps starting others).\n"
                    + "\n".join(f"{pid} ran {n} steps:\n{self.describe(pid, history=8)}" for pid, n in busiest)
                )

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> int:
        """Move the clock (`advance(hours=1)`, `advance(timedelta(days=2))`) and run what became due."""
        delta = delta if delta is not None else timedelta(**kwargs)
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward")
        clock.advance(delta)
        return self.run()

    def advance_to(self, when: datetime) -> int:
        """Move the clock to `when` (timezone-aware) and run what became due."""
        return self.advance(max(timedelta(0), when - clock.now()))

    def next_deadline(self) -> datetime | None:
        """When something is due next: the earliest pending timer, step retry or delayed outbox job."""
        candidates = [
            PendingCase.objects.filter(kind="timer", goroutine__status=GoroutineStatus.BLOCKED,
                                       goroutine__process__status=ProcessStatus.RUNNING)
            .order_by("deadline").values_list("deadline", flat=True).first(),
            Goroutine.objects.filter(status=GoroutineStatus.RUNNABLE, process__status=ProcessStatus.RUNNING,
                                     retry_at__isnull=False)
            .order_by("retry_at").values_list("retry_at", flat=True).first(),
        ]
        if self.run_outbox:
            candidates.append(
                Outbox.objects.filter(status=OutboxStatus.PENDING, not_before__isnull=False)
                .order_by("not_before").values_list("not_before", flat=True).first()
            )
        found = [c for c in candidates if c is not None]
        return min(found) if found else None

    def advance_to_next(self) -> timedelta:
        """Jump the clock to the next deadline (`next_deadline()`) and run. Returns how far the
        clock moved. Raises AssertionError if nothing is scheduled."""
        when = self.next_deadline()
        if when is None:
            raise AssertionError("advance_to_next(): no timer, retry or delayed outbox job is pending")
        moved = max(timedelta(0), when - clock.now())
        self.advance(moved)
        return moved

    def now(self) -> datetime:
        """The engine's current time (what `p.now()` returns in a step)."""
        return clock.now()

    def start(self, definition: str, input: Any = None, id: str | None = None, version: str | None = None) -> str:
        """Start a process and run it until it rests. Returns the process id. `version` starts
        that registered version of the definition (say, the old one still kept for processes
        already running it); without it, the latest."""
        started = services.start_process(definition, input, id, version=version)
        self.run()
        return started.process.id

    def send(self, channel: str, value: Any = None, key: str | None = None, *, wait: bool = True,
             create: bool = True) -> services.SendResult:
        """Send into a channel as the outside world does (REST, Slack), then run.

        `result.status` is delivered, buffered or waiting (nobody received it yet; it is held
        until someone does). `wait=False` raises NoReceiver instead of waiting."""
        result = services.send(channel, value, key or f"test-send-{next(self._keys)}", wait=wait, create=create)
        self.run()
        return result

    def close(self, channel: str) -> bool:
        changed = services.close_channel(channel)
        self.run()
        return changed

    def cancel(self, process_id: str, reason: str = "") -> ProcessInstance:
        proc = services.cancel_process(process_id, reason)
        self.run()
        return proc

    def retry(self, process_id: str) -> ProcessInstance:
        proc = services.retry_process(process_id)
        self.run()
        return proc

    # -- looking ---------------------------------------------------------------------------
    def process(self, process_id: str) -> ProcessInstance:
        proc = ProcessInstance.objects.filter(pk=process_id).first()
        if proc is None:
            known = list(ProcessInstance.objects.order_by("-created_at").values_list("id", flat=True)[:5])
            raise AssertionError(f"no process {process_id!r} (latest: {known})")
        return proc

    def state(self, process_id: str) -> dict:
        return self.process(process_id).state

    def output(self, process_id: str) -> Any:
        return self.process(process_id).output

    def waits(self, process_id: str) -> dict[str, list[str]]:
        """Goroutine -> what it waits for: ["recv chan", "send chan", "timer"]; [] if runnable/ended."""
        out: dict[str, list[str]] = {}
        for g in Goroutine.objects.filter(process_id=process_id).order_by("id"):
            cases = PendingCase.objects.filter(goroutine=g).order_by("case_index")
            out[g.name] = ["timer" if c.kind == "timer" else f"{c.kind} {c.channel_id}" for c in cases]
        return out

    def targets(self, process_id: str) -> dict[str, list[str]]:
        """Goroutine -> the methods its pending cases will call (blocked), or [next_method] (runnable)."""
        out: dict[str, list[str]] = {}
        for g in Goroutine.objects.filter(process_id=process_id).order_by("id"):
            if g.status == GoroutineStatus.BLOCKED:
                out[g.name] = list(PendingCase.objects.filter(goroutine=g).order_by("case_index").values_list("target", flat=True))
            elif g.status in (GoroutineStatus.RUNNABLE, GoroutineStatus.FAILED):
                out[g.name] = [g.next_method]
            else:
                out[g.name] = []
        return out

    def timers(self, process_id: str) -> dict[str, list[timedelta]]:
        """Goroutine -> how long until each of its timer cases fires (from now)."""
        now = clock.now()
        out: dict[str, list[timedelta]] = {}
        for name, deadline in PendingCase.objects.filter(goroutine__process_id=process_id, kind="timer").order_by(
            "goroutine_id", "case_index"
        ).values_list("goroutine__name", "deadline"):
            out.setdefault(name, []).append(deadline - now)
        return out

    def statuses(self, process_id: str) -> dict[str, str]:
        """Goroutine -> runnable | blocked | done | failed | cancelled."""
        return dict(Goroutine.objects.filter(process_id=process_id).order_by("id").values_list("name", "status"))

    def history(self, process_id: str) -> list[str]:
        """The process's history, one line per event: `Goroutine.Method` for each step (with
        ` [error]` / ` [failed]` when it raised), else the event kind (`start`, `cancel`, `retry`,
        `migrate Main_A -> Main_B`)."""
        return [_history_line(e) for e in Event.objects.filter(process_id=process_id).order_by("seq")]

    def events(self, process_id: str) -> list[Event]:
        return list(Event.objects.filter(process_id=process_id).order_by("seq"))

    def buffer(self, channel: str) -> list[Any]:
        """The values buffered in a channel, oldest first."""
        return channels.buffer_values(channel)

    def outbox(self, process_id: str | None = None, *, pending_only: bool = False) -> list[dict]:
        """Side effects recorded by `p.on_commit` (and Slack helpers): func, args, kwargs, status."""
        qs = Outbox.objects.order_by("id")
        if process_id is not None:
            qs = qs.filter(process_id=process_id)
        if pending_only:
            qs = qs.filter(status=OutboxStatus.PENDING)
        return [
            {"func": o.func, "args": o.args, "kwargs": o.kwargs, "status": o.status, "result": o.result,
             "error": o.last_error}
            for o in qs
        ]

    def describe(self, process_id: str, *, history: int = 12) -> str:
        """A readable picture of a process: status, state, each goroutine and what it waits for,
        the error if any, and the last `history` events. Assertion messages end with it."""
        proc = ProcessInstance.objects.filter(pk=process_id).first()
        if proc is None:
            return f"(no process {process_id!r})"
        now = clock.now()
        version = f" version {proc.version}" if proc.version else ""
        lines = [f"process {proc.definition}{version} {proc.id}: {proc.status}, {proc.step_count} events"]
        lines.append(f"  state:  {_short(proc.state, 300)}")
        if proc.status == ProcessStatus.DONE:
            lines.append(f"  output: {_short(proc.output, 300)}")
        lines.append("  goroutines:")
        for g in Goroutine.objects.filter(process_id=process_id).order_by("id"):
            if g.status == GoroutineStatus.BLOCKED:
                cases = []
                for c in PendingCase.objects.filter(goroutine=g).order_by("case_index"):
                    if c.kind == "timer":
                        what = f"timer in {_delta(c.deadline - now)}"
                    elif c.kind == "send":
                        what = f"send {c.channel_id} {_short(c.value, 60)}"
                    else:
                        what = f"recv {c.channel_id}"
                    cases.append(f"{what} -> {c.target}")
                text = "blocked on " + "; ".join(cases)
            elif g.status == GoroutineStatus.RUNNABLE:
                text = f"runnable -> {g.next_method} (after {g.next_case or '?'})"
                if g.retry_at:
                    text += f", retry in {_delta(g.retry_at - now)} (attempt {g.attempts + 1})"
            elif g.status == GoroutineStatus.FAILED:
                text = f"failed at {g.next_method}"
            else:
                text = g.status
            if g.last_error:
                text += f"; last error: {g.last_error}"
            lines.append(f"    {g.name}: {text}")
        if proc.error:
            lines.append("  error: " + proc.error.strip().splitlines()[0])
        events = self.history(process_id)
        shown = events[-history:] if history else []
        if shown:
            more = f"... {len(events) - len(shown)} earlier, " if len(events) > len(shown) else ""
            lines.append(f"  history: {more}" + ", ".join(shown))
        return "\n".join(lines)

    # -- asserting -------------------------------------------------------------------------
    def assert_finished(self, process_id: str, output: Any = ...) -> None:
        """The process is done (and, if given, its output equals `output`)."""
        proc = self.process(process_id)
        if proc.status != ProcessStatus.DONE:
            raise AssertionError(f"expected process {process_id} to be done, it is {proc.status}\n{self.describe(process_id)}")
        if output is not ... and proc.output != output:
            raise AssertionError(
                f"process {process_id} finished with output\n  {_short(proc.output, 500)}\nexpected\n  {_short(output, 500)}"
                f"\n{self.describe(process_id)}"
            )

    def assert_status(self, process_id: str, status: str) -> None:
        """The process is `running`, `done`, `failed` or `cancelled`."""
        proc = self.process(process_id)
        if proc.status != status:
            raise AssertionError(f"expected process {process_id} to be {status}, it is {proc.status}\n{self.describe(process_id)}")

    def assert_running(self, process_id: str) -> None:
        self.assert_status(process_id, ProcessStatus.RUNNING)

    def assert_failed(self, process_id: str, error: str | None = None) -> None:
        """The process failed (its error contains `error`, if given)."""
        self.assert_status(process_id, ProcessStatus.FAILED)
        proc = self.process(process_id)
        if error is not None and error not in proc.error:
            raise AssertionError(f"process {process_id} failed with\n  {proc.error.strip().splitlines()[0] if proc.error else '(no error)'}\n"
                                 f"which does not contain {error!r}")

    def assert_waits(self, process_id: str, expected: dict[str, list[str]] | None = None, **goroutines: list[str]) -> None:
        """What the named goroutines wait for, as `waits()` shows it:
        `run.assert_waits(pid, Main=["recv answers", "timer"], Reminder=["timer"])`.
        Goroutines not named are not checked; pass a dict for names like `Worker#2`."""
        wanted = {**(expected or {}), **goroutines}
        if not wanted:
            raise TypeError("assert_waits() needs at least one goroutine to check")
        actual = self.waits(process_id)
        wrong = []
        for name, cases in wanted.items():
            if name not in actual:
                wrong.append(f"  goroutine {name} does not exist (goroutines: {', '.join(actual) or 'none'})")
            elif actual[name] != list(cases):
                wrong.append(f"  {name} waits for {actual[name]}, expected {list(cases)}")
        if wrong:
            raise AssertionError("unexpected waits:\n" + "\n".join(wrong) + "\n" + self.describe(process_id))

    def assert_state(self, process_id: str, expected: dict[str, Any] | None = None, **fields: Any) -> None:
        """The named state fields have these values (others are not checked):
        `run.assert_state(pid, counter=3, approved=True)`."""
        wanted = {**(expected or {}), **fields}
        state = self.state(process_id)
        wrong = []
        for name, value in wanted.items():
            if name not in state:
                wrong.append(f"  {name}: missing (fields: {', '.join(sorted(state))})")
            elif state[name] != value:
                wrong.append(f"  {name}: {_short(state[name], 200)}, expected {_short(value, 200)}")
        if wrong:
            raise AssertionError(f"unexpected state of process {process_id}:\n" + "\n".join(wrong)
                                 + "\n" + self.describe(process_id))

    def assert_history(self, process_id: str, expected: list[str], *, partial: bool = False) -> None:
        """The history (`history()`) is exactly `expected`; with `partial=True`, `expected`
        appears in it in order, other events allowed in between."""
        actual = self.history(process_id)
        if partial:
            it = iter(actual)
            missing = next((step for step in expected if not any(step == a for a in it)), None)
            if missing is None:
                return
            raise AssertionError(
                f"history of process {process_id} does not contain {missing!r} in order after the previous ones\n"
                f"  expected (in order): {expected}\n  actual: {actual}"
            )
        if actual != list(expected):
            width = max([len(x) for x in [*actual, *expected]] + [8])
            rows = [f"    {'actual':<{width}}   expected"]
            for a, e in itertools.zip_longest(actual, expected, fillvalue=""):
                mark = " " if a == e else "≠"
                rows.append(f"  {mark} {a:<{width}}   {e}")
            raise AssertionError(f"history of process {process_id} differs:\n" + "\n".join(rows))

    def assert_statuses(self, process_id: str, expected: dict[str, str] | None = None, **goroutines: str) -> None:
        """Goroutine statuses: `run.assert_statuses(pid, Main="blocked", Reminder="done")`."""
        wanted = {**(expected or {}), **goroutines}
        actual = self.statuses(process_id)
        wrong = [f"  {n}: {actual.get(n, 'does not exist')}, expected {s}" for n, s in wanted.items() if actual.get(n) != s]
        if wrong:
            raise AssertionError("unexpected goroutine statuses:\n" + "\n".join(wrong) + "\n" + self.describe(process_id))


def _history_line(e: Event) -> str:
    if e.kind == EventKind.MIGRATE:
        d = e.detail or {}
        return f"migrate {d.get('from', '?')} -> {d.get('to', '?')}"
    if e.method:
        line = f"{e.goroutine}.{e.method}"
        if e.kind in (EventKind.ERROR, EventKind.FAILED):
            line += f" [{e.kind}]"
        return line
    return e.kind


def _short(value: Any, limit: int) -> str:
    try:
        text = json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _delta(d: timedelta) -> str:
    seconds = d.total_seconds()
    if seconds < 0:
        return f"-{_delta(-d)} (due)"
    if seconds < 120:
        return f"{round(seconds, 1):g}s"
    if seconds < 7200:
        return f"{round(seconds / 60, 1):g}m"
    if seconds < 2 * 86400:
        return f"{round(seconds / 3600, 1):g}h"
    return f"{round(seconds / 86400, 1):g}d"
