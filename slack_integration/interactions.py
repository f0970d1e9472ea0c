"""What a verified, well-formed interaction does (the view only verifies, parses and answers).

A click or modal submission answers a question only when it comes from the very message we
posted (its channel and ts as Slack gave them) and, if the question names approvers, from one of
those Slack user ids. The answer is delivered with an answering sender built here from the
verified Slack user (and the Django user it is linked to, if any): that provenance is what the
process reads as who answered.
"""
from __future__ import annotations

import logging

from slct_workflows import clock

from . import blocks, client, identity, services
from .client import SlackNotConfigured, SlackPermanentError, SlackRetryLater
from .models import Kind, SlackMessage, Status
from .payloads import Action, AnswerSubmission, BlockActions, SlackUserRef

log = logging.getLogger("slack_integration")


def _find_message(event: BlockActions, action: Action) -> SlackMessage | None:
    message_id = blocks.message_id_from_block(action.block_id)
    if message_id is None or not event.message_ts:
        return None
    m = SlackMessage.objects.filter(pk=message_id).first()
    # The click must come from the very message we posted (channel and ts as Slack gave them).
    if m is None or m.ts != event.message_ts or (
        event.channel_id and m.slack_channel and m.slack_channel != event.channel_id
    ):
        return None
    return m


def block_actions(event: BlockActions) -> None:
    for action in event.actions:
        if not action.action_id.startswith("slct_"):
            continue
        m = _find_message(event, action)
        if m is None or not m.is_question:
            log.info("Slack action %s for an unknown message", action.action_id)
            continue
        _handle_action(event, m, action)


def _may_answer(m: SlackMessage, who: SlackUserRef) -> bool:
    if not services.is_allowed(m, who.id):
        services.tell(m, who.id, services.refusal_text(m, services.REFUSED))
        return False
    if m.status != Status.OPEN:
        services.tell(m, who.id, services.refusal_text(m, services.ALREADY_ANSWERED))
        return False
    return True


def _handle_action(event: BlockActions, m: SlackMessage, action: Action) -> None:
    who, action_id = event.user, action.action_id
    if not _may_answer(m, who):
        return
    answered_at = services.from_slack_ts(action.action_ts) or clock.now()
    if m.kind == Kind.APPROVE and action_id in (blocks.APPROVE, blocks.REJECT):
        value = services.answer_value(m, approved=action_id == blocks.APPROVE, answered_at=answered_at)
    elif m.kind == Kind.CHOOSE and action_id.startswith(blocks.CHOOSE):
        raw = action.selected_value if action_id == blocks.CHOOSE else action.value
        choice = _option(m, raw)
        if choice is None:
            log.info("Slack choice %r out of range for message %s", raw, m.pk)
            return
        value = services.answer_value(m, choice=choice, answered_at=answered_at)
    elif m.kind == Kind.ASK and action_id == blocks.ASK_OPEN:
        _open_answer_modal(m, event.trigger_id, who.id)
        return
    else:
        return
    _deliver(m, who, value, f"slack:{m.slack_channel}:{m.ts}:{action_id}")


def _option(m: SlackMessage, raw: str | None) -> str | None:
    """The option value for a button's or menu's index (we post indexes, not values)."""
    if raw is None or not raw.isascii() or not raw.isdigit():
        return None
    i = int(raw)
    options = m.options or []
    return options[i]["value"] if i < len(options) else None


def _deliver(m: SlackMessage, who: SlackUserRef, value: dict, key: str) -> str:
    sender = identity.slack_answer(who.id, user=identity.django_user(who.id, who.team), name=who.name)
    outcome = services.deliver_answer(m, value, key, sender)
    if outcome != services.DELIVERED:
        services.tell(m, who.id, services.refusal_text(m, outcome))
    return outcome


def _open_answer_modal(m: SlackMessage, trigger_id: str | None, user_id: str) -> None:
    """views.open must happen within 3 s of the click (the trigger id expires), so it is called
    here rather than from a job."""
    if not trigger_id:
        return
    try:
        client.call("views_open", timeout=2, trigger_id=trigger_id, view=blocks.answer_modal(m))
    except (SlackNotConfigured, SlackPermanentError, SlackRetryLater) as exc:
        log.warning("views.open for message %s failed: %s", m.pk, exc)
        services.tell(m, user_id, "Sorry, the answer form could not be opened. Please try again.")
    except Exception as exc:  # network trouble: still acknowledge the click
        log.warning("views.open for message %s failed: %s", m.pk, exc)
        services.tell(m, user_id, "Sorry, the answer form could not be opened. Please try again.")


def answer_submitted(event: AnswerSubmission) -> dict | None:
    """The answer modal was submitted. Returns the modal's field errors to show, or None (an
    empty 200 closes the modal)."""
    m = SlackMessage.objects.filter(pk=event.message_id).first()
    if m is None or m.kind != Kind.ASK:
        return None
    if not event.text:
        return {blocks.ANSWER_BLOCK: "Please write an answer."}
    if not _may_answer(m, event.user):
        return None
    value = services.answer_value(m, text=event.text, answered_at=clock.now())
    _deliver(m, event.user, value, f"slack:{m.slack_channel}:{m.ts}:{blocks.ANSWER_ACTION}")
    return None
