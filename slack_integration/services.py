"""Answers in, outcomes out.

* `deliver_answer` sends an answer into the question's reply channel through the engine's
  idempotent external-send path (`slct_workflows.services.send`, wait=False): a repeat of the same
  key, a second answer, or an answer after the process moved on delivers nothing. The answer
  carries an answering sender (`identity.slack_answer` / `identity.admin_answer`) that only the
  two verified doors build: the interactivity endpoint after checking Slack's signature, and the
  admin's Pending questions page for a user with the answering permission. Reply channels are
  private, so no other sender (REST, `/slct send`, the admin's channel page) gets a value in.
* `reconcile` reads the engine's state (the source of truth) and records what became of a
  question: still open while its goroutine waits on the reply channel; answered if a send was
  delivered there (who answered is read from the send's recorded provenance, never from the
  value); otherwise timed out, cancelled or closed. A closed question that was posted gets a
  `chat.update` (an outbox job) that replaces its buttons with the outcome.
* Slack calls from here run later in RQ jobs (`queue_job`), never in the request, except
  `views.open`, which Slack requires within 3 seconds of the click.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.db import transaction
from django.utils.dateparse import parse_datetime

from slct_workflows import clock
from slct_workflows import services as wf
from slct_workflows.access import Sender
from slct_workflows.errors import ChannelClosed, Conflict, Forbidden, InvalidInput, NoReceiver, NotFound
from slct_workflows.models import (
    ExternalSend,
    GoroutineStatus,
    PendingCase,
    ProcessInstance,
    ProcessStatus,
    SendStatus,
)
from slct_workflows.runtime import with_db_retries

from . import blocks, identity
from .models import Delivery, Kind, SlackMessage, Status

log = logging.getLogger("slack_integration")

UPDATE_JOB = "slack_integration.jobs.update_message"
EPHEMERAL_JOB = "slack_integration.jobs.post_ephemeral"
SYNC_JOB = "slack_integration.jobs.sync_process"

DELIVERED, REPEATED, ALREADY_ANSWERED, NOT_OPEN, REFUSED = (
    "delivered", "repeated", "already_answered", "not_open", "refused",
)

# Who may answer questions on the admin's Pending questions page (either permission).
ANSWER_PERMISSIONS = ("slack_integration.change_pendingquestion", "slack_integration.change_slackmessage")


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
    sender: dict | None = None  # the delivered send's provenance, as the server recorded it


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
        return Outcome(Status.ANSWERED, send.value, send.key, send.sender)
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
                _record_answer(m, outcome, now)
            m.save()
            if m.ts and m.delivery == Delivery.POSTED:
                queue_job(UPDATE_JOB, m.pk, process_id=m.process_id)
            return True

    return with_db_retries(attempt)


def answered_by(provenance: Any) -> tuple[str, str, str] | None:
    """(who, display name, via) of a delivered answer, from the send's recorded provenance; None
    if the send is not a verified answer (server code that sent into the reply channel)."""
    if not (isinstance(provenance, dict) and provenance.get("answer") is True
            and provenance.get("via") in identity.ANSWER_DOORS):
        return None
    via = provenance["via"]
    who = provenance.get("slack_user") if via == "slack" else provenance.get("user")
    who = str(who or "")
    return who[:200], str(provenance.get("name") or provenance.get("user") or who)[:200], via


def _record_answer(m: SlackMessage, outcome: Outcome, now: datetime) -> None:
    m.answer = outcome.answer
    who = answered_by(outcome.sender)
    if who is None:
        # Not an answer given in Slack or the admin: the process refuses it too
        # (slack.UnverifiedAnswer), so the question shows as closed, not as answered by anyone.
        m.status, m.answered_via = Status.CLOSED, "unverified"
        return
    m.answered_by, m.answered_by_name, m.answered_via = who
    at = outcome.answer.get("answered_at") if isinstance(outcome.answer, dict) else None
    m.answered_at = (parse_datetime(at) if isinstance(at, str) else None) or now


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

def is_allowed(message: SlackMessage, slack_user_id: str) -> bool:
    """May this verified Slack user answer? With approvers, only those Slack user ids; without,
    anyone who can see the message in Slack (Slack's channel membership is the gate)."""
    if not message.approvers:
        return True
    return bool(slack_user_id) and slack_user_id in message.approvers


def answer_value(message: SlackMessage, *, answered_at: datetime, approved: bool | None = None,
                 text: str | None = None, choice: str | None = None) -> dict:
    """The channel value of an answer: what was answered, not who (that travels as the send's
    provenance, recorded by the server)."""
    if message.kind == Kind.CHOOSE and choice is not None and text is None:
        text = message.option_label(choice)
    return {
        "kind": message.kind, "approved": bool(approved) if message.kind == Kind.APPROVE else False,
        "text": text, "choice": choice, "answered_at": answered_at.isoformat(),
    }


def deliver_answer(message: SlackMessage, value: dict, key: str, sender: Sender) -> str:
    """Send the answer into the reply channel, exactly once per question.

    `sender` is the answering sender a verified door built (`identity.slack_answer`,
    `identity.admin_answer`). Returns DELIVERED; REPEATED (the very same request again: a
    retry); ALREADY_ANSWERED (another answer got there first); NOT_OPEN (the process took
    another path)."""
    if not (sender.answer and sender.via in identity.ANSWER_DOORS):
        raise Forbidden("only a verified Slack click or the admin's Pending questions page answers a question")
    if not message.is_question or not message.reply_channel:
        raise InvalidInput("only questions can be answered")
    try:
        result = wf.send(message.reply_channel, value, key, wait=False, sender=sender)
    except NoReceiver:
        outcome = NOT_OPEN
    except ChannelClosed:
        outcome = NOT_OPEN
    except Conflict:  # the key was used with another value: a second click on the same button
        outcome = ALREADY_ANSWERED
    except NotFound:
        outcome = NOT_OPEN
    except Forbidden as exc:  # a reply channel that is not private: made before the access model?
        log.error("answer to Slack question %s refused by the channel policy: %s", message.pk, exc)
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


def may_answer_in_admin(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_active", False)
                and any(user.has_perm(perm) for perm in ANSWER_PERMISSIONS))


def answer_from_admin(message: SlackMessage, user: Any, *, approved: bool | None = None, text: str | None = None,
                      choice: str | None = None) -> str:
    """A user with the answering permission answers on the Pending questions page: the same
    delivery path as a Slack click, recorded as answered by that Django user. Approvers (Slack
    ids) do not apply here: answering in the admin is an operator's decision, audited by name."""
    if not may_answer_in_admin(user):
        raise Forbidden("you need the permission slack_integration.change_pendingquestion to answer questions")
    if not message.is_question:
        raise InvalidInput("only questions can be answered")
    if message.kind == Kind.APPROVE and approved is None:
        raise InvalidInput("approve or reject")
    if message.kind == Kind.ASK and not (text or "").strip():
        raise InvalidInput("the answer must not be empty")
    if message.kind == Kind.CHOOSE and choice not in {o["value"] for o in message.options}:
        raise InvalidInput(f"unknown option {choice!r}")
    value = answer_value(
        message, answered_at=clock.now(), approved=approved, text=(text or "").strip() or None, choice=choice,
    )
    return deliver_answer(message, value, f"slack-admin:{message.pk}", identity.admin_answer(user))


def from_slack_ts(ts: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(ts), tz=dt_timezone.utc)
    except (TypeError, ValueError, OverflowError):
        return None
