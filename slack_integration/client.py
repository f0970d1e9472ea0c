"""The Slack Web API client (slack_sdk's WebClient) and how its errors map onto outbox retries.

`run_outbox` (slct_workflows.jobs) retries a raising job with backoff; an exception with a
`retry_after` attribute (seconds) sets the delay, so a 429 honours Slack's Retry-After.
"""
from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from . import conf

log = logging.getLogger("slack_integration")

# Errors worth another try later; anything else is a configuration or content problem.
TRANSIENT_ERRORS = {
    "ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout",
    "team_added_to_org",
}


class SlackNotConfigured(Exception):
    """No SLACK_BOT_TOKEN: nothing is sent to Slack (questions are answered in the admin)."""


class SlackRetryLater(Exception):
    """A transient failure: raise it from an outbox job to have it retried after `retry_after` s."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SlackPermanentError(Exception):
    """Slack refused the call for a reason a retry will not fix (channel_not_found, invalid_auth...)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def configured() -> bool:
    return bool(conf.bot_token())


def get_client(timeout: int | None = None) -> WebClient:
    token = conf.bot_token()
    if not token:
        raise SlackNotConfigured("SLACK_BOT_TOKEN is not set")
    return WebClient(token=token, base_url=conf.api_url(), timeout=timeout or conf.timeout())


def call(method: str, *, timeout: int | None = None, **kwargs: Any) -> dict:
    """Call a Web API method (`chat_postMessage`, ...) and classify failures."""
    client = get_client(timeout)
    try:
        response = getattr(client, method)(**kwargs)
    except SlackApiError as exc:
        raise classify(exc) from exc
    return dict(response.data) if isinstance(response.data, dict) else {}


def classify(exc: SlackApiError) -> Exception:
    response = exc.response
    status = getattr(response, "status_code", 0) or 0
    data = response.data if isinstance(getattr(response, "data", None), dict) else {}
    error = str(data.get("error") or f"http_{status}")
    headers = {str(k).lower(): v for k, v in (getattr(response, "headers", None) or {}).items()}
    if status == 429 or error == "ratelimited":
        raw = headers.get("retry-after")
        if isinstance(raw, list):
            raw = raw[0] if raw else None
        try:
            retry_after = max(1.0, float(raw))
        except (TypeError, ValueError):
            retry_after = 1.0
        return SlackRetryLater(f"Slack rate limit (429), retry after {retry_after:g}s", retry_after=retry_after)
    if status >= 500 or error in TRANSIENT_ERRORS:
        return SlackRetryLater(f"Slack error {error} (HTTP {status})")
    return SlackPermanentError(error)
