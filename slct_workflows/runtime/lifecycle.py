"""A process's life outside the select: its rows created, its goroutines ended, its parent
answered, its end told to the hooks. Shared by the step (engine) and the services (start,
cancel); the one place a process's end raises `hooks.ProcessEnded`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import F

from slct_workflows import clock, hooks, semantics
from slct_workflows.definitions import Definition
from slct_workflows.models import (
    GOROUTINE_LIVE,
    Event,
    EventKind,
    Goroutine,
    NextKind,
    PendingCase,
    ProcessInstance,
    new_id,
)
from slct_workflows.runtime import channels
from slct_workflows.runtime.runnable import Next, cleared_fields, next_fields
from slct_workflows.values import to_json


def create_process_rows(
    definition: Definition, input: Any, process_id: str | None, *, parent: ProcessInstance | None = None,
    result_channel: str = "", now: datetime | None = None,
) -> tuple[ProcessInstance, Goroutine]:
    """A new process: its row, its runnable Main goroutine and its start event (not enqueued)."""
    now = now or clock.now()
    proc = ProcessInstance.objects.create(
        id=process_id or new_id(), definition=definition.name, version=definition.version,
        state=to_json(definition.dump_state(definition.new_state())), input=input, parent=parent,
        result_channel=result_channel, step_count=1,
    )
    main = Goroutine.objects.create(
        process=proc, name="Main", **next_fields(Next("Main_Start", NextKind.START, value=input), now),
    )
    Event.objects.create(
        process=proc, seq=1, kind=EventKind.START, goroutine="Main", method="", value=input,
        source={"process": parent.id, "goroutine": ""} if parent else None,
        started_at=now, finished_at=now,
    )
    return proc, main


def process_ended(proc: ProcessInstance) -> None:
    """Tell the hooks that `proc` reached a final status (done, failed, cancelled), in the
    transaction that writes it."""
    if hooks.wanted(hooks.ProcessEnded):
        hooks.emit([hooks.ProcessEnded(
            process_id=proc.id, definition=proc.definition, status=str(proc.status), error=proc.error or "",
        )])


def end_goroutines(proc: ProcessInstance, *, exclude: int | None, status: str) -> list[int]:
    """Cancel/finish every live goroutine of `proc` (locked, in id order) and drop their cases."""
    qs = Goroutine.objects.select_for_update().filter(
        process=proc, status__in=GOROUTINE_LIVE
    ).order_by("id")
    if exclude is not None:
        qs = qs.exclude(pk=exclude)
    ids = list(qs.values_list("id", flat=True))
    PendingCase.objects.filter(goroutine_id__in=ids).delete()
    Goroutine.objects.filter(pk__in=ids).update(status=status, **cleared_fields(), wait_seq=F("wait_seq") + 1)
    return ids


def deliver_result(
    locked: channels.LockedChannels, proc: ProcessInstance, output: Any, now: datetime, source: dict | None,
    *, done: bool,
) -> None:
    """Answer the parent: a finished child's output goes into its result channel (capacity 1, one
    sender, so it never blocks), then the channel is closed; a cancelled child only closes it."""
    name = proc.result_channel
    if done:
        decision = channels.decide(locked, lambda: semantics.external_send(locked.states[name], output)[1])
        channels.apply(locked, decision, now, source)
    channels.close(locked, name, now, source)
