"""Outbox jobs (run once after commit by slct_workflows.jobs.run_outbox, retried on failure).

A transient Slack failure raises `SlackRetryLater` (a 429 carries Retry-After as `retry_after`),
so the outbox retries the job after that delay; a permanent one is recorded on the message.
"""
from __future__ import annotations

import logging

from django.db import transaction

from slct_workflows import clock

from . import blocks, client, services
from .client import SlackNotConfigured, SlackPermanentError
from .models import Delivery, SlackMessage, Status

log = logging.getLogger("slack_integration")


def post_question(message_id: int) -> str:
    """chat.postMessage for a recorded message (a question or a plain post); stores channel and ts."""
    m = SlackMessage.objects.filter(pk=message_id).first()
    if m is None:
        return "gone"
    if m.ts:
        return "already posted"
    if m.is_question:
        services.reconcile(m.pk)  # closed before we got to post it (timed out, answered in the admin)?
        m.refresh_from_db()
        if m.status != Status.OPEN:
            SlackMessage.objects.filter(pk=m.pk, ts="").update(delivery=Delivery.SKIPPED)
            return "skipped"
    if not client.configured():
        SlackMessage.objects.filter(pk=m.pk).update(
            delivery=Delivery.NO_CREDENTIALS, last_error="SLACK_BOT_TOKEN is not set; answer in the admin"
        )
        return "no credentials"
    if not m.channel:
        SlackMessage.objects.filter(pk=m.pk).update(
            delivery=Delivery.FAILED, last_error="no Slack channel (pass channel= or set SLACK_DEFAULT_CHANNEL)"
        )
        return "no channel"
    text, blks = blocks.render(m)
    try:
        data = client.call("chat_postMessage", channel=m.channel, text=text, blocks=blks)
    except SlackPermanentError as exc:
        SlackMessage.objects.filter(pk=m.pk).update(delivery=Delivery.FAILED, last_error=f"chat.postMessage: {exc}")
        log.warning("Slack refused message %s: %s", m.pk, exc)
        return f"failed: {exc}"
    except Exception as exc:
        SlackMessage.objects.filter(pk=m.pk).update(last_error=f"chat.postMessage: {exc}")
        raise
    with transaction.atomic():
        m = SlackMessage.objects.select_for_update().get(pk=m.pk)
        m.ts = str(data.get("ts") or "")
        m.slack_channel = str(data.get("channel") or m.channel)
        m.delivery = Delivery.POSTED
        m.posted_at = clock.now()
        m.last_error = ""
        m.save()
        closed_meanwhile = m.is_question and m.status != Status.OPEN
    if closed_meanwhile:  # answered in the admin (or timed out) while we were posting
        update_message(m.pk)
    elif m.is_question:
        services.reconcile(m.pk)
    return "posted"


def update_message(message_id: int) -> str:
    """chat.update: show the message in its current state (the outcome, without buttons)."""
    m = SlackMessage.objects.filter(pk=message_id).first()
    if m is None or not m.ts or not m.slack_channel:
        return "not posted"
    text, blks = blocks.render(m)
    try:
        client.call("chat_update", channel=m.slack_channel, ts=m.ts, text=text, blocks=blks)
    except SlackNotConfigured:
        return "no credentials"
    except SlackPermanentError as exc:
        SlackMessage.objects.filter(pk=m.pk).update(last_error=f"chat.update: {exc}")
        return f"failed: {exc}"
    SlackMessage.objects.filter(pk=m.pk).update(synced_at=clock.now())
    return "updated"


def post_ephemeral(message_id: int, user: str, text: str) -> str:
    """chat.postEphemeral: a reply only `user` sees, in the message's channel."""
    m = SlackMessage.objects.filter(pk=message_id).first()
    if m is None or not m.slack_channel:
        return "not posted"
    try:
        client.call("chat_postEphemeral", channel=m.slack_channel, user=user, text=text)
    except SlackNotConfigured:
        return "no credentials"
    except SlackPermanentError as exc:  # e.g. user_not_in_channel: nothing better to do
        log.info("ephemeral reply to %s failed: %s", user, exc)
        return f"failed: {exc}"
    return "sent"


def sync_process(process_id: str) -> int:
    """Close the process's questions the engine has moved past (timer fired, cancelled, finished)."""
    return services.sync_process(process_id)
