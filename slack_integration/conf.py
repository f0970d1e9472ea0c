"""Slack settings, read in one place at call time (so tests can override them).

Each comes from Django settings, else the environment:

SLACK_BOT_TOKEN          xoxb-... bot token; empty: questions are recorded and answered in the admin
SLACK_SIGNING_SECRET     the app's signing secret; empty: every request to /slack/ is refused (401)
SLACK_API_URL            Web API base URL (default https://slack.com/api/); tests point it at a fake
SLACK_DEFAULT_CHANNEL    channel used when a helper is called without `channel=`
SLACK_COMMAND_USERS      comma-separated Slack user ids allowed to use `/slct send` (empty: everyone)
SLACK_TIMEOUT            seconds for one Web API call (default 10)
"""
from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _raw(name: str, default: Any) -> Any:
    if hasattr(settings, name):
        return getattr(settings, name)
    return os.environ.get(name, default)


def bot_token() -> str:
    return str(_raw("SLACK_BOT_TOKEN", "") or "")


def signing_secret() -> str:
    return str(_raw("SLACK_SIGNING_SECRET", "") or "")


def api_url() -> str:
    url = str(_raw("SLACK_API_URL", "") or "https://slack.com/api/")
    return url if url.endswith("/") else url + "/"


def default_channel() -> str:
    return str(_raw("SLACK_DEFAULT_CHANNEL", "") or "")


def command_users() -> list[str]:
    raw = _raw("SLACK_COMMAND_USERS", "")
    if isinstance(raw, str):
        return [u.strip() for u in raw.split(",") if u.strip()]
    if isinstance(raw, (list, tuple)):
        return [str(u) for u in raw]
    raise ImproperlyConfigured("SLACK_COMMAND_USERS must be a comma-separated string or a list of user ids")


def timeout() -> int:
    raw = _raw("SLACK_TIMEOUT", 10)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"SLACK_TIMEOUT must be an integer, got {raw!r}") from None
    if value < 1:
        raise ImproperlyConfigured(f"SLACK_TIMEOUT must be >= 1, got {value}")
    return value
