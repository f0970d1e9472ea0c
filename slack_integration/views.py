"""Slack's requests: the interactivity endpoint (button clicks, the answer modal) and `/slct`.

Every request is verified with slack_sdk's SignatureVerifier (the v0 HMAC of
"v0:{timestamp}:{body}" with the signing secret, and a timestamp within five minutes); anything
else gets 401 and changes nothing. The work done before answering is one or two short database
transactions, so Slack gets its acknowledgement well within 3 seconds; chat.update and
chat.postEphemeral run afterwards in RQ jobs.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from slack_sdk.signature import SignatureVerifier

from slct_workflows import clock
from slct_workflows import selectors
from slct_workflows import services as wf
from slct_workflows.errors import SlctError

from . import blocks, client, conf, services
from .client import SlackNotConfigured, SlackPermanentError, SlackRetryLater
from .models import Kind, SlackMessage, Status

log = logging.getLogger("slack_integration")


def verified(request: HttpRequest) -> bool:
    secret = conf.signing_secret()
    if not secret:
        return False
    try:
        return SignatureVerifier(secret).is_valid(
            body=request.body,
            timestamp=request.headers.get("X-Slack-Request-Timestamp"),
            signature=request.headers.get("X-Slack-Signature"),
        )
    except (ValueError, TypeError):  # a timestamp that is not a number
        return False


def _refuse() -> HttpResponse:
    return HttpResponse("invalid or missing Slack request signature", status=401, content_type="text/plain")


# -- interactivity ------------------------------------------------------------------------------

@csrf_exempt
@require_POST
def interactivity(request: HttpRequest) -> HttpResponse:
    if not verified(request):
        return _refuse()
    try:
        payload = json.loads(request.POST.get("payload", ""))
    except (TypeError, ValueError):
        return HttpResponse("no payload", status=400, content_type="text/plain")
    if not isinstance(payload, dict):
        return HttpResponse("bad payload", status=400, content_type="text/plain")
    kind = payload.get("type")
    if kind == "block_actions":
        return block_actions(payload)
    if kind == "view_submission":
        return view_submission(payload)
    return HttpResponse(status=200)  # view_closed, shortcuts...: nothing to do


def _user(payload: dict) -> tuple[str, str]:
    user = payload.get("user") or {}
    return str(user.get("id") or ""), str(user.get("username") or user.get("name") or "")


def _find_message(payload: dict, action: dict) -> SlackMessage | None:
    container = payload.get("container") or {}
    channel = container.get("channel_id") or (payload.get("channel") or {}).get("id")
    ts = container.get("message_ts") or (payload.get("message") or {}).get("ts")
    message_id = blocks.message_id_from_block(action.get("block_id"))
    if message_id is None or not ts:
        return None
    m = SlackMessage.objects.filter(pk=message_id).first()
    # The click must come from the very message we posted (channel and ts as Slack gave them).
    if m is None or m.ts != ts or (channel and m.slack_channel and m.slack_channel != channel):
        return None
    return m


def block_actions(payload: dict) -> HttpResponse:
    user_id, user_name = _user(payload)
    for action in payload.get("actions") or []:
        action_id = str(action.get("action_id") or "")
        if not action_id.startswith("slct_"):
            continue
        m = _find_message(payload, action)
        if m is None or not m.is_question:
            log.info("Slack action %s for an unknown message", action_id)
            continue
        _handle_action(payload, m, action, action_id, user_id, user_name)
    return HttpResponse(status=200)


def _handle_action(payload: dict, m: SlackMessage, action: dict, action_id: str, user_id: str,
                   user_name: str) -> None:
    if not services.is_allowed(m, user_id, user_name):
        services.tell(m, user_id, services.refusal_text(m, services.REFUSED))
        return
    if m.status != Status.OPEN:
        services.tell(m, user_id, services.refusal_text(m, services.ALREADY_ANSWERED))
        return
    answered_at = services.from_slack_ts(action.get("action_ts")) or clock.now()
    common = dict(user=user_id, user_name=user_name, via="slack", answered_at=answered_at)
    if m.kind == Kind.APPROVE and action_id in (blocks.APPROVE, blocks.REJECT):
        value = services.answer_value(m, approved=action_id == blocks.APPROVE, **common)
    elif m.kind == Kind.CHOOSE and action_id.startswith(blocks.CHOOSE):
        raw = (action.get("selected_option") or {}).get("value") if action_id == blocks.CHOOSE else action.get("value")
        try:
            choice = m.options[int(raw)]["value"]
        except (TypeError, ValueError, IndexError, KeyError):
            log.info("Slack choice %r out of range for message %s", raw, m.pk)
            return
        value = services.answer_value(m, choice=choice, **common)
    elif m.kind == Kind.ASK and action_id == blocks.ASK_OPEN:
        _open_answer_modal(m, payload.get("trigger_id"), user_id)
        return
    else:
        return
    key = f"slack:{m.slack_channel}:{m.ts}:{action_id}"
    outcome = services.deliver_answer(m, value, key)
    if outcome != services.DELIVERED:
        services.tell(m, user_id, services.refusal_text(m, outcome))


def _open_answer_modal(m: SlackMessage, trigger_id: Any, user_id: str) -> None:
    """views.open must happen within 3 s of the click (the trigger id expires), so it is called
    here rather than from a job."""
    if not trigger_id:
        return
    try:
        client.call("views_open", timeout=2, trigger_id=str(trigger_id), view=blocks.answer_modal(m))
    except (SlackNotConfigured, SlackPermanentError, SlackRetryLater) as exc:
        log.warning("views.open for message %s failed: %s", m.pk, exc)
        services.tell(m, user_id, "Sorry, the answer form could not be opened. Please try again.")
    except Exception as exc:  # network trouble: still acknowledge the click
        log.warning("views.open for message %s failed: %s", m.pk, exc)
        services.tell(m, user_id, "Sorry, the answer form could not be opened. Please try again.")


def view_submission(payload: dict) -> HttpResponse:
    view = payload.get("view") or {}
    if view.get("callback_id") != blocks.ASK_CALLBACK:
        return HttpResponse(status=200)
    user_id, user_name = _user(payload)
    try:
        m = SlackMessage.objects.filter(pk=int(view.get("private_metadata") or "")).first()
    except ValueError:
        m = None
    if m is None or m.kind != Kind.ASK:
        return HttpResponse(status=200)
    values = ((view.get("state") or {}).get("values") or {}).get(blocks.ANSWER_BLOCK) or {}
    text = str((values.get(blocks.ANSWER_ACTION) or {}).get("value") or "").strip()
    if not text:
        return JsonResponse({"response_action": "errors", "errors": {blocks.ANSWER_BLOCK: "Please write an answer."}})
    if not services.is_allowed(m, user_id, user_name):
        services.tell(m, user_id, services.refusal_text(m, services.REFUSED))
        return HttpResponse(status=200)
    if m.status != Status.OPEN:
        services.tell(m, user_id, services.refusal_text(m, services.ALREADY_ANSWERED))
        return HttpResponse(status=200)
    value = services.answer_value(m, text=text, user=user_id, user_name=user_name, via="slack",
                                  answered_at=clock.now())
    outcome = services.deliver_answer(m, value, f"slack:{m.slack_channel}:{m.ts}:{blocks.ANSWER_ACTION}")
    if outcome != services.DELIVERED:
        services.tell(m, user_id, services.refusal_text(m, outcome))
    return HttpResponse(status=200)  # an empty 200 closes the modal


# -- the slash command --------------------------------------------------------------------------

USAGE = (
    "*Usage*\n"
    "`/slct send <channel> <json value>` sends a value into a process channel\n"
    "`/slct status <process id>` shows what a process is doing"
)


def _reply(text: str) -> JsonResponse:
    return JsonResponse({"response_type": "ephemeral", "text": text})


@csrf_exempt
@require_POST
def commands(request: HttpRequest) -> HttpResponse:
    if not verified(request):
        return _refuse()
    form = request.POST
    parts = (form.get("text") or "").strip().split(None, 2)
    sub = parts[0].lower() if parts else ""
    if sub == "send":
        return _reply(_command_send(form, parts[1:]))
    if sub == "status":
        return _reply(_command_status(parts[1:]))
    return _reply(USAGE)


def _command_send(form, args: list[str]) -> str:
    allowed = conf.command_users()
    user = form.get("user_id") or ""
    if allowed and user not in allowed:
        return "Sorry, you are not allowed to send into process channels."
    if len(args) < 2:
        return "Usage: `/slct send <channel> <json value>`, e.g. `/slct send approvals {\"ok\": true}`"
    channel, raw = args[0], args[1]
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return f"The value is not JSON ({exc.msg}). Quote strings: `/slct send {channel} \"hello\"`"
    trigger = form.get("trigger_id") or ""
    if not trigger:
        return "Slack sent no trigger id; cannot make the send idempotent."
    key = f"slack-command:{form.get('team_id') or ''}:{trigger}"
    try:
        result = wf.send(channel, value, key, wait=True)
    except SlctError as exc:
        return f"Not sent: {exc}"
    words = {
        "delivered": "delivered to a waiting receiver", "buffered": "buffered",
        "waiting": "waiting for a receiver", "received": "received", "closed": "refused: the channel closed",
    }
    where = f" ({result.send.delivered_to})" if result.send is not None and result.send.delivered_to else ""
    again = " (repeated request: nothing new sent)" if result.repeated else ""
    return f"Sent to `{channel}`: {words.get(result.status, result.status)}{where}{again}"


def _command_status(args: list[str]) -> str:
    if not args:
        return "Usage: `/slct status <process id>`"
    pid = args[0]
    try:
        proc = wf.get_process(pid)
    except SlctError as exc:
        return str(exc)
    now = clock.now()
    lines = [f"*{proc.definition}* `{proc.id}` is *{proc.status}* ({proc.step_count} steps)"]
    if proc.status == "running":
        for g in selectors.goroutines(proc):
            if g.status in ("runnable", "blocked", "failed"):
                lines.append(f"• {g.waits_for(now)}")
    if proc.output is not None:
        lines.append(f"Output: `{json.dumps(proc.output, sort_keys=True)[:1000]}`")
    if proc.error:
        lines.append(f"Error: {proc.error.splitlines()[0][:500]}")
    open_q = SlackMessage.objects.filter(process=proc, status=Status.OPEN).exclude(kind=Kind.POST).count()
    if open_q:
        lines.append(f"{open_q} open Slack question(s)")
    return "\n".join(lines)
