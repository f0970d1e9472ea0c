"""Answers in, outcomes out.

* `deliver_answer` sends an answer into the question's reply channel through the engine's
  idempotent external-send path (`slct_workflows.services.send`, wait=False): a repeat of the same
  key, a second answer, or an answer after the process moved on delivers nothing.
* `reconcile` reads the engine's state (the source of truth) and records what became of a
  question: still open while its goroutine waits on the reply channel; answered if a send was
  delivered there; otherwise timed out, cancelled or closed. A closed question that was posted
  gets a `chat.update` (an outbox job) that replaces its buttons with the outcome.
* Slack calls from here run later in RQ jobs (`queue_job`), never in the request, except
  `views.open`, which Slack requires within 3 seconds of the click.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from typing import Any

from django.db import transaction
from django.utils.dateparse import parse_datetime

from slct_workflows import clock
from slct_workflows import services as wf
from slct_workflows.db import with_db_retries
from slct_workflows.errors import ChannelClosed, Conflict, InvalidInput, NoReceiver, NotFound
from slct_workflows.models import (
    ExternalSend, GoroutineStatus, PendingCase, ProcessInstance, ProcessStatus, SendStatus,
)

from . import blocks
from .models import Delivery, Kind, SlackMessage, Status

log = logging.getLogger("slack_integration")

UPDATE_JOB = "slack_integration.jobs.update_message"
EPHEMERAL_JOB = "slack_integration.jobs.post_ephemeral"
SYNC_JOB = "slack_integration.jobs.sync_process"

DELIVERED, REPEATED, ALREADY_ANSWERED, NOT_OPEN, REFUSED = (
    "delivered", "repeated", "already_answered", "not_open", "refused",
)


# -- background Slack calls ---------------------------------------------------------------------

def queue_job(func: str, *args: Any, process_id: str | None = None) -> int:
    """Record an outbox row (in the current transaction, if any) and enqueue it after commit.
    The engine's outbox runs it once, retrying failures with backoff (the sweep finds lost ones)."""
    return wf.record_side_effect(func, *args, process_id=process_id)


def tell(message: SlackMessage, user: str, text: str) -> None:
    """A polite ephemeral reply (chat.postEphemeral) to `user` in the message's channel, later."""
    if message.slack_channel and user:
        queue_job(EPHEMERAL_JOB, message.pk, user, text, process_id=message.process_id)


# -- reading the engine -------------------------------------------------------------------------

@dataclass
class Outcome:
    status: str
    answer: Any = None
    key: str = ""


def question_outcome(message: SlackMessage) -> Outcome | None:
    """None while the question's goroutine still waits on its reply channel; else what happened."""
    if not message.reply_channel:
        return None
    # Order matters: a delivery removes the pending case and records the send in one commit, so
    # checking the pending case first never mistakes a fresh answer for a timeout.
    waiting = PendingCase.objects.filter(
        channel_id=message.reply_channel, kind="recv", goroutine__isnull=False,
        goroutine__status=GoroutineStatus.BLOCKED,
    ).exists()
    if waiting:
        return None
    send = (
        ExternalSend.objects.filter(
            channel=message.reply_channel,
            status__in=[SendStatus.DELIVERED, SendStatus.RECEIVED, SendStatus.BUFFERED],
        ).order_by("created_at", "key").first()
    )
    if send is not None:
        return Outcome(Status.ANSWERED, send.value, send.key)
    status = ProcessInstance.objects.filter(pk=message.process_id).values_list("status", flat=True).first()
    if status == ProcessStatus.CANCELLED or status is None:
        return Outcome(Status.CANCELLED)
    if message.deadline is not None and clock.now() >= message.deadline:
        return Outcome(Status.TIMED_OUT)
    return Outcome(Status.CLOSED)


def reconcile(message_id: int) -> bool:
    """Bring a question's status in line with the engine. True if it changed (and, if it was
    posted, a chat.update is queued)."""

    def attempt() -> bool:
        with transaction.atomic():
            m = SlackMessage.objects.select_for_update().filter(pk=message_id).first()
            if m is None or not m.is_question or m.status != Status.OPEN:
                return False
            outcome = question_outcome(m)
            if outcome is None:
                return False
            now = clock.now()
            m.status = outcome.status
            m.closed_at = now
            if outcome.status == Status.ANSWERED:
                value = outcome.answer
                m.answer = value
                if isinstance(value, dict):
                    m.answered_by = str(value.get("user") or "")[:200]
                    m.answered_by_name = str(value.get("user_name") or "")[:200]
                    m.answered_via = str(value.get("via") or "other")[:16]
                    at = value.get("answered_at")
                    m.answered_at = (parse_datetime(at) if isinstance(at, str) else None) or now
                else:
                    m.answered_via, m.answered_at = "other", now
            m.save()
            if m.ts and m.delivery == Delivery.POSTED:
                queue_job(UPDATE_JOB, m.pk, process_id=m.process_id)
            return True

    return with_db_retries(attempt)


def sync_process(process_id: str) -> int:
    """Reconcile every open question of a process; returns how many closed."""
    ids = list(
        SlackMessage.objects.filter(process_id=process_id, status=Status.OPEN)
        .exclude(kind=Kind.POST).values_list("id", flat=True)
    )
    return sum(1 for mid in ids if reconcile(mid))


def sync_all(limit: int = 1000) -> int:
    """Reconcile open questions across processes (the `slack_sync` command, the admin page)."""
    rows = list(
        SlackMessage.objects.filter(status=Status.OPEN).exclude(kind=Kind.POST)
        .order_by("id").values_list("id", "reply_channel")[:limit]
    )
    # One query finds the questions still waited on; only the others need a closer look.
    waiting = set(
        PendingCase.objects.filter(
            channel_id__in=[rc for _, rc in rows if rc], kind="recv", goroutine__status=GoroutineStatus.BLOCKED,
        ).values_list("channel_id", flat=True)
    )
    return sum(1 for mid, rc in rows if rc not in waiting and reconcile(mid))


# -- answers ------------------------------------------------------------------------------------

def is_allowed(message: SlackMessage, user_id: str, user_name: str = "") -> bool:
    if not message.approvers:
        return True
    return user_id in message.approvers or bool(user_name and user_name in message.approvers)


def answer_value(message: SlackMessage, *, user: str, user_name: str, via: str, answered_at: datetime,
                 approved: bool | None = None, text: str | None = None, choice: str | None = None) -> dict:
    """The channel value `slack.Result.from_channel_value` decodes."""
    if message.kind == Kind.CHOOSE and choice is not None and text is None:
        text = message.option_label(choice)
    return {
        "kind": message.kind, "approved": bool(approved) if message.kind == Kind.APPROVE else False,
        "text": text, "choice": choice, "user": user, "user_name": user_name, "via": via,
        "timed_out": False, "answered_at": answered_at.isoformat(),
    }


def deliver_answer(message: SlackMessage, value: dict, key: str) -> str:
    """Send the answer into the reply channel, exactly once per question.

    Returns DELIVERED; REPEATED (the very same request again: a retry); ALREADY_ANSWERED (another
    answer got there first); NOT_OPEN (the process took another path)."""
    try:
        result = wf.send(message.reply_channel, value, key, wait=False)
    except NoReceiver:
        outcome = NOT_OPEN
    except ChannelClosed:
        outcome = NOT_OPEN
    except Conflict:  # the key was used with another value: a second click on the same button
        outcome = ALREADY_ANSWERED
    except NotFound:
        outcome = NOT_OPEN
    else:
        outcome = REPEATED if result.repeated else DELIVERED
    reconcile(message.pk)
    if outcome == NOT_OPEN:
        message.refresh_from_db()
        if message.status == Status.ANSWERED:
            outcome = ALREADY_ANSWERED
    return outcome


def refusal_text(message: SlackMessage, outcome: str) -> str:
    """The polite ephemeral reply when an answer delivered nothing new."""
    message.refresh_from_db()
    line = blocks.outcome_line(message)
    if outcome == REFUSED:
        who = ", ".join(f"<@{a}>" for a in message.approvers)
        return f"Sorry, only {who} can answer this question."
    if outcome == REPEATED:
        return "Thanks, your answer was already recorded." + (f" {line}" if line else "")
    if message.status == Status.ANSWERED:
        return f"This question was already answered. {line}"
    if message.status != Status.OPEN:
        return f"This question is no longer open. {line}"
    return "This question is no longer open."


def answer_from_admin(message: SlackMessage, user, *, approved: bool | None = None, text: str | None = None,
                      choice: str | None = None) -> str:
    """A staff user answers in the admin: the same delivery path as a Slack click."""
    if not message.is_question:
        raise InvalidInput("only questions can be answered")
    if message.kind == Kind.APPROVE and approved is None:
        raise InvalidInput("approve or reject")
    if message.kind == Kind.ASK and not (text or "").strip():
        raise InvalidInput("the answer must not be empty")
    if message.kind == Kind.CHOOSE and choice not in {o["value"] for o in message.options}:
        raise InvalidInput(f"unknown option {choice!r}")
    username = user.get_username()
    value = answer_value(
        message, user=username, user_name=user.get_full_name() or username, via="admin",
        answered_at=clock.now(), approved=approved, text=(text or "").strip() or None, choice=choice,
    )
    return deliver_answer(message, value, f"slack-admin:{message.pk}")


def from_slack_ts(ts: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(ts), tz=dt_timezone.utc)
    except (TypeError, ValueError, OverflowError):
        return None
