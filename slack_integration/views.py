"""Slack's requests: the interactivity endpoint (button clicks, the answer modal) and `/slct`.

Every request is verified with slack_sdk's SignatureVerifier (the v0 HMAC of
"v0:{timestamp}:{body}" with the signing secret, and a timestamp within five minutes); anything
else gets 401 and changes nothing. A verified request is then parsed by `payloads` into typed
records; any shape Slack does not send gets 400 and changes nothing. The work itself lives in
`interactions` and `slash`: one or two short database transactions, so Slack gets its
acknowledgement well within 3 seconds; chat.update and chat.postEphemeral run afterwards in RQ
jobs.
"""
from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from slack_sdk.signature import SignatureVerifier

from . import conf, interactions, payloads, slash
from .payloads import BadPayload

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


def _bad(exc: BadPayload) -> HttpResponse:
    return HttpResponse(f"malformed Slack request: {exc}"[:300], status=400, content_type="text/plain")


# -- interactivity ------------------------------------------------------------------------------

@csrf_exempt
@require_POST
def interactivity(request: HttpRequest) -> HttpResponse:
    if not verified(request):
        return _refuse()
    try:
        body = handle_interactivity(request.POST.get("payload"))
    except BadPayload as exc:
        return _bad(exc)
    if body is not None:
        return JsonResponse(body)
    return HttpResponse(status=200)  # an empty 200 acknowledges (and closes a submitted modal)


def handle_interactivity(raw) -> dict | None:
    """A verified interactivity payload (its JSON text) → what to answer Slack with: None for a
    plain acknowledgement, or a body (a modal's field errors). Raises BadPayload, having changed
    nothing, for a shape Slack does not send. Shared by the HTTP endpoint and Socket Mode."""
    event = payloads.parse_interactivity(raw)
    if isinstance(event, payloads.BlockActions):
        interactions.block_actions(event)
    elif isinstance(event, payloads.AnswerSubmission):
        errors = interactions.answer_submitted(event)
        if errors:
            return {"response_action": "errors", "errors": errors}
    return None


# -- the slash command --------------------------------------------------------------------------

@csrf_exempt
@require_POST
def commands(request: HttpRequest) -> HttpResponse:
    if not verified(request):
        return _refuse()
    try:
        body = handle_command(request.POST)
    except BadPayload as exc:
        return _bad(exc)
    return JsonResponse(body)


def handle_command(form) -> dict:
    """A verified `/slct` request (its form fields) → the ephemeral reply. Raises BadPayload,
    having changed nothing, for a shape Slack does not send. Shared with Socket Mode."""
    cmd = payloads.parse_command(form)
    return {"response_type": "ephemeral", "text": slash.run(cmd)}
