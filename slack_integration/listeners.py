"""Follow the engine through its lifecycle hooks, so a question nobody can answer any more has
its Slack message closed and its buttons removed.

* a select fired by a timer: the goroutine that asked may have timed out (whichever path fired
  the timer: the workers' timer loop, a scheduled job, the recovery sweep, the step itself);
* a process ended (done, failed, cancelled): its goroutines are gone, or one failed.

The hooks run inside the transaction that makes the change, so the outbox row for
`jobs.sync_process` recorded here commits with it (or not at all); the job reconciles after
commit, reading what the question's goroutine waits on now (a question whose goroutine still
waits on its reply stays open).
"""
from __future__ import annotations

import logging
from typing import Iterable

from django.db import transaction

from slack_integration import services
from slack_integration.models import Kind, SlackMessage, Status
from slct_workflows import hooks
from slct_workflows.runtime import FixedValues

log = logging.getLogger("slack_integration")


def select_fired(events: list[hooks.SelectFired]) -> None:
    timed_out = {(e.process_id, e.goroutine) for e in events if e.by == hooks.BY_TIMER}  # all are
    if timed_out:
        _queue_syncs(_asking(timed_out))


def process_ended(events: list[hooks.ProcessEnded]) -> None:
    ended = sorted({e.process_id for e in events})
    _queue_syncs({pid for (pid,) in _OPEN_IN_PROCESSES(ended, Status.OPEN.value, Kind.POST.value)})


# The two reads a listener makes on the engine's hot path (a group commit's ended processes, a
# bulk timer firing), compiled once per list length: built by the ORM at every call they cost a
# timer burst about a millisecond of CPU per group. tests/slack/test_listeners.py holds each to
# its queryset's answer.
_OPEN_IN_PROCESSES = FixedValues(lambda ids, open_, post: SlackMessage.objects.filter(
    process_id__in=ids, status=open_).exclude(kind=post).values_list("process_id"))
_OPEN_OF_GOROUTINES = FixedValues(lambda ids, names, open_, post: SlackMessage.objects.filter(
    process_id__in=ids, goroutine__in=names, status=open_).exclude(kind=post).values_list("process_id", "goroutine"))


def _asking(pairs: set[tuple[str, str]]) -> set[str]:
    """The processes among `pairs` whose goroutine has an open question (one indexed read for a
    whole bulk timer firing; most processes never ask anything in Slack)."""
    rows = _OPEN_OF_GOROUTINES(sorted({p for p, _ in pairs}), sorted({g for _, g in pairs}),
                               Status.OPEN.value, Kind.POST.value)
    return {p for p, g in rows if (p, g) in pairs}


def _queue_syncs(process_ids: Iterable[str]) -> None:
    for process_id in sorted(process_ids):
        try:
            with transaction.atomic():  # a savepoint: a failure here never breaks the engine's step
                services.queue_job(services.SYNC_JOB, process_id, process_id=process_id)
        except Exception:  # the `slack_sync` command and the admin page reconcile later
            log.warning("could not queue a Slack sync for process %s", process_id, exc_info=True)


def connect() -> None:
    hooks.subscribe(hooks.SelectFired, select_fired, by={hooks.BY_TIMER})
    hooks.subscribe(hooks.ProcessEnded, process_ended)
