"""Slack settings, read in one place at call time (so tests can override them).

Each comes from Django settings, else the environment:

SLACK_BOT_TOKEN          xoxb-... bot token; empty: questions are recorded and answered in the admin
SLACK_SIGNING_SECRET     the app's signing secret; empty: every request to /slack/ is refused (401)
SLACK_API_URL            Web API base URL (default https://slack.com/api/); tests point it at a fake
SLACK_DEFAULT_CHANNEL    channel used when a helper is called without `channel=`
SLACK_COMMAND_USERS      comma-separated Slack user ids; when set, only they may use `/slct` at all. An
                         extra restriction on top of the linked account's permissions: it never
                         lets anyone in (empty: no extra restriction)
SLACK_USER_MAP           Slack user id -> Django username links on top of the admin's "Slack users":
                         "U012AB=alice,U034CD=bob" (a team prefix pins the workspace:
                         "T01ACME:U012AB=alice"), or a dict; a bad entry raises ImproperlyConfigured
SLACK_TIMEOUT            seconds for one Web API call (default 10)
SLACK_APP_TOKEN          xapp-... app-level token for Socket Mode (`manage.py slack_socket`); empty: not used
"""
from __future__ import annotations

import os
import re
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


# Slack user ids: U... (workspace users) or W... (Enterprise Grid); team ids T... or E... (an org).
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{1,31}$")
SLACK_TEAM_ID = re.compile(r"^[TE][A-Z0-9]{1,31}$")


def command_users() -> list[str]:
    """Slack user ids allowed to use `/slct` (empty: no restriction beyond the linked account)."""
    raw = _raw("SLACK_COMMAND_USERS", "")
    if isinstance(raw, str):
        users = [u.strip() for u in raw.split(",") if u.strip()]
    elif isinstance(raw, (list, tuple)):
        users = [str(u).strip() for u in raw]
    else:
        raise ImproperlyConfigured("SLACK_COMMAND_USERS must be a comma-separated string or a list of user ids")
    bad = [u for u in users if not SLACK_USER_ID.match(u)]
    if bad:
        raise ImproperlyConfigured(f"SLACK_COMMAND_USERS holds values that are not Slack user ids: {bad!r}")
    return users


def user_map() -> dict[tuple[str, str], str]:
    """SLACK_USER_MAP as {(team id or "", Slack user id): Django username}."""
    raw = _raw("SLACK_USER_MAP", "")
    if isinstance(raw, dict):
        entries = [(str(k), v) for k, v in raw.items()]
    elif isinstance(raw, str):
        entries = []
        for item in re.split(r"[,\n]", raw):
            if not item.strip():
                continue
            key, sep, name = item.partition("=")
            if not sep:
                raise ImproperlyConfigured(f"SLACK_USER_MAP entry {item.strip()!r} is not SLACK_ID=username")
            entries.append((key, name))
    else:
        raise ImproperlyConfigured("SLACK_USER_MAP must be a string like 'U012AB=alice,U034CD=bob' or a dict")
    out: dict[tuple[str, str], str] = {}
    for key, name in entries:
        team, _, user = key.strip().rpartition(":")
        if not SLACK_USER_ID.match(user) or (team and not SLACK_TEAM_ID.match(team)):
            raise ImproperlyConfigured(
                f"SLACK_USER_MAP: {key.strip()!r} is not a Slack user id (U012AB, or T01ACME:U012AB)")
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > 150 or any(c.isspace() for c in name.strip()):
            raise ImproperlyConfigured(f"SLACK_USER_MAP: {name!r} (for {key.strip()}) is not a Django username")
        previous = out.setdefault((team, user), name.strip())
        if previous != name.strip():
            raise ImproperlyConfigured(f"SLACK_USER_MAP links {key.strip()} to both {previous!r} and {name.strip()!r}")
    return out


def timeout() -> int:
    raw = _raw("SLACK_TIMEOUT", 10)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"SLACK_TIMEOUT must be an integer, got {raw!r}") from None
    if value < 1:
        raise ImproperlyConfigured(f"SLACK_TIMEOUT must be >= 1, got {value}")
    return value


# An app-level token: "xapp-" then Slack's digits, letters and dashes (xapp-1-A0123-456-abc...).
SLACK_APP_TOKEN_RE = re.compile(r"^xapp-[A-Za-z0-9-]{1,250}$")


def app_token() -> str:
    """SLACK_APP_TOKEN: the app-level token (xapp-..., scope connections:write) that Socket Mode
    (`manage.py slack_socket`) opens its connection with; empty: Socket Mode is not configured.
    Anything else (a bot token, a stray space...) raises ImproperlyConfigured."""
    raw = _raw("SLACK_APP_TOKEN", "")
    if raw is None or raw == "":
        return ""
    if not isinstance(raw, str) or not SLACK_APP_TOKEN_RE.match(raw):
        shown = raw[:5] + "..." if isinstance(raw, str) else type(raw).__name__
        raise ImproperlyConfigured(
            f"SLACK_APP_TOKEN must be an app-level token (xapp-...), got {shown!r}")
    return raw
