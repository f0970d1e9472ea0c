"""Test helpers: run processes to quiescence in-process, with a clock you move by hand.

    from slct_workflows.testing import WorkflowRunner

    def test_counter(db):
        with WorkflowRunner() as run:
            proc = run.start("counter", {"idle_seconds": 3600})
            run.send("counter", 1)
            assert run.waits(proc)["Main"] == ["recv counter", "timer"]
            run.advance(hours=1)
            assert run.process(proc).output == {"count": 1}

The same engine and one transaction per step as in production; no Redis. Work is found by
polling the database (runnable goroutines, due timers, pending outbox rows), exactly what the
recovery sweep looks for, so the helper also works inside a test's wrapping transaction.
"""
from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q

from . import clock, dispatch, jobs, services
from .models import (
    Event, Goroutine, GoroutineStatus, Outbox, OutboxStatus, PendingCase, ProcessInstance, ProcessStatus,
)


class NullDispatcher:
    """Drops wake-ups: the runner finds the work in the database instead."""

    def wake(self, goroutine_ids: list[int]) -> None:
        pass

    def wake_at(self, goroutine_id: int, when: datetime) -> None:
        pass

    def outbox(self, outbox_ids: list[int]) -> None:
        pass

    def outbox_at(self, outbox_id: int, when: datetime) -> None:
        pass


class Stuck(AssertionError):
    pass


class WorkflowRunner:
    def __init__(self, *, max_steps: int = 10_000, run_outbox: bool = True) -> None:
        self.max_steps = max_steps
        self.run_outbox = run_outbox
        self._keys = itertools.count(1)
        self._previous: dispatch.Dispatcher | None = None

    def __enter__(self) -> "WorkflowRunner":
        self._previous = dispatch.use(NullDispatcher())
        clock.reset()
        return self

    def __exit__(self, *exc: Any) -> None:
        dispatch.use(self._previous)
        clock.reset()

    # -- driving ---------------------------------------------------------------------------
    def run(self) -> int:
        """Run every runnable goroutine, due timer and outbox job until nothing is left."""
        steps = 0
        while True:
            now = clock.now()
            runnable = list(
                Goroutine.objects.filter(status=GoroutineStatus.RUNNABLE, process__status=ProcessStatus.RUNNING)
                .filter(Q(retry_at__isnull=True) | Q(retry_at__lte=now))
                .order_by("runnable_since", "id").values_list("id", flat=True)
            )
            timers = list(
                PendingCase.objects.filter(kind="timer", deadline__lte=now, goroutine__status=GoroutineStatus.BLOCKED,
                                           goroutine__process__status=ProcessStatus.RUNNING)
                .order_by("deadline", "id").values_list("goroutine_id", flat=True).distinct()
            )
            outbox = list(
                Outbox.objects.filter(status=OutboxStatus.PENDING).filter(
                    Q(not_before__isnull=True) | Q(not_before__lte=now)
                ).values_list("id", flat=True)
            ) if self.run_outbox else []
            if not (runnable or timers or outbox):
                return steps
            for gid in [*runnable, *timers]:
                steps += jobs.wake(gid)
            for oid in outbox:
                jobs.run_outbox(oid)
            if steps > self.max_steps:
                raise Stuck(f"more than {self.max_steps} steps: a process loops without waiting")

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> int:
        """Move the clock (`advance(hours=1)`) and run what became due."""
        clock.advance(delta or timedelta(**kwargs))
        return self.run()

    def now(self) -> datetime:
        return clock.now()

    def start(self, definition: str, input: Any = None, id: str | None = None) -> str:
        started = services.start_process(definition, input, id)
        self.run()
        return started.process.id

    def send(self, channel: str, value: Any, key: str | None = None, *, wait: bool = True,
             create: bool = True) -> services.SendResult:
        result = services.send(channel, value, key or f"test-send-{next(self._keys)}", wait=wait, create=create)
        self.run()
        return result

    def close(self, channel: str) -> bool:
        changed = services.close_channel(channel)
        self.run()
        return changed

    # -- looking ---------------------------------------------------------------------------
    def process(self, process_id: str) -> ProcessInstance:
        return ProcessInstance.objects.get(pk=process_id)

    def state(self, process_id: str) -> dict:
        return self.process(process_id).state

    def waits(self, process_id: str) -> dict[str, list[str]]:
        """Goroutine -> what it waits for: ["recv chan", "send chan", "timer"]; [] if runnable/ended."""
        out: dict[str, list[str]] = {}
        for g in Goroutine.objects.filter(process_id=process_id).order_by("id"):
            cases = PendingCase.objects.filter(goroutine=g).order_by("case_index")
            out[g.name] = ["timer" if c.kind == "timer" else f"{c.kind} {c.channel_id}" for c in cases]
        return out

    def statuses(self, process_id: str) -> dict[str, str]:
        return dict(Goroutine.objects.filter(process_id=process_id).order_by("id").values_list("name", "status"))

    def history(self, process_id: str) -> list[str]:
        """`Goroutine.Method` per step event, in order (start, cancel and others by kind)."""
        out = []
        for e in Event.objects.filter(process_id=process_id).order_by("seq"):
            out.append(f"{e.goroutine}.{e.method}" if e.method else e.kind)
        return out

    def assert_finished(self, process_id: str, output: Any = ...) -> None:
        proc = self.process(process_id)
        errors = list(Goroutine.objects.filter(process_id=process_id).exclude(last_error="").values_list("name", "last_error"))
        assert proc.status == ProcessStatus.DONE, (
            f"process {process_id} is {proc.status}: {proc.error or errors or self.waits(process_id)}"
        )
        if output is not ...:
            assert proc.output == output, f"output {proc.output!r} != {output!r}"

