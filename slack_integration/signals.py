"""Notice when a process leaves a question without an answer, so its Slack message is updated.

The engine has no hooks of its own, so we listen to its model saves (cheap in-memory checks;
a query only when a timer fired or a process ended):

* a goroutine saved runnable with a timer case: its select timed out;
* a process saved done, cancelled or failed: its goroutines are gone, or one failed (a question
  whose goroutine still waits stays open: the reconcile checks the pending case).

Then, in the same transaction, an outbox row for `jobs.sync_process` is recorded (so it is
durable and happens only if that transaction commits); the job reconciles after commit.
"""
from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.signals import post_save

log = logging.getLogger("slack_integration")


_open_questions = None


def _has_open_questions(process_id: str, goroutine: str | None = None) -> bool:
    """Run at the end of every process (a step's hot path): its SQL is written once."""
    global _open_questions
    from slct_workflows.runtime.fixed_sql import FixedValues

    from .models import Kind, SlackMessage, Status

    if _open_questions is None:
        _open_questions = (
            FixedValues(lambda pid, status, kind: SlackMessage.objects.filter(process_id=pid, status=status)
                        .exclude(kind=kind).values_list("id")[:1]),
            FixedValues(lambda pid, status, kind, name: SlackMessage.objects.filter(process_id=pid, status=status)
                        .exclude(kind=kind).filter(goroutine=name).values_list("id")[:1]),
        )
    if goroutine is None:
        return bool(_open_questions[0](process_id, Status.OPEN, Kind.POST))
    return bool(_open_questions[1](process_id, Status.OPEN, Kind.POST, goroutine))


def _queue_sync(process_id: str, goroutine: str | None = None) -> None:
    from . import services

    # Most processes never ask anything in Slack: the (indexed) read alone decides, without the
    # two SAVEPOINT round trips a guarded write needs; those are paid only when there is a sync
    # to queue. A read that fails here breaks the step's transaction like any of the step's own
    # reads, and the step is retried.
    if not _has_open_questions(process_id, goroutine):
        return
    try:
        with transaction.atomic():  # a savepoint: a failure here never breaks the engine's step
            services.queue_job(services.SYNC_JOB, process_id, process_id=process_id)
    except Exception:  # the `slack_sync` command and the admin page reconcile later
        log.warning("could not queue a Slack sync for process %s", process_id, exc_info=True)


def goroutine_saved(sender, instance, created, **kwargs) -> None:
    from slct_workflows.models import GoroutineStatus

    if instance.status == GoroutineStatus.RUNNABLE and (instance.next_case or "").startswith("timer"):
        _queue_sync(instance.process_id, instance.name)


def process_saved(sender, instance, created, **kwargs) -> None:
    from slct_workflows.models import ProcessStatus

    if not created and instance.status in (ProcessStatus.DONE, ProcessStatus.CANCELLED, ProcessStatus.FAILED):
        _queue_sync(instance.pk)


def connect() -> None:
    from slct_workflows.models import Goroutine, ProcessInstance

    post_save.connect(goroutine_saved, sender=Goroutine, dispatch_uid="slack_integration.goroutine_saved")
    post_save.connect(process_saved, sender=ProcessInstance, dispatch_uid="slack_integration.process_saved")
