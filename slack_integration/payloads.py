"""The shapes of Slack's requests, checked once at the door.

A request that passed the signature check is still only as well-formed as whoever holds the
signing secret made it (and Slack adds fields over time). Everything the views and services read
is parsed here into small typed records; any other shape (`actions: 5`, `user: "U1"`,
`container: "x"`, `view.state` of the wrong type, a `private_metadata` that is not ours, a value
over Slack's own limits, JSON nested too deep...) raises `BadPayload`, which the views answer
with 400 before anything is read from or written to the database. Unknown *extra* fields are
ignored, so Slack can add fields without breaking us.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from . import blocks
from .conf import SLACK_TEAM_ID, SLACK_USER_ID

MAX_PAYLOAD = 1_000_000  # characters of the `payload` form field (a message's blocks included)
MAX_ID = 255  # action ids, block ids, ts, channel ids, trigger ids
MAX_NAME = 255  # Slack user names
MAX_VALUE = 2000  # a button's or option's value (Slack's limit)
MAX_ANSWER = 3000  # the answer modal's text field (its max_length)
MAX_METADATA = 3000  # a view's private_metadata (Slack's limit)
MAX_ACTIONS = 25
MAX_COMMAND_TEXT = 20_000  # `/slct` text (a JSON value included)


class BadPayload(ValueError):
    """A signed request whose shape is not one Slack sends: answered with 400, nothing changed."""


@dataclass(frozen=True)
class SlackUserRef:
    """Who made the request, as Slack says in the signed body."""

    id: str
    name: str = ""
    team: str = ""


@dataclass(frozen=True)
class Action:
    action_id: str
    block_id: str | None = None
    value: str | None = None
    selected_value: str | None = None  # a static_select's selected_option.value
    action_ts: str | None = None


@dataclass(frozen=True)
class BlockActions:
    user: SlackUserRef
    channel_id: str | None
    message_ts: str | None
    trigger_id: str | None
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class AnswerSubmission:
    """The answer modal (`blocks.ASK_CALLBACK`) submitted."""

    user: SlackUserRef
    message_id: int
    text: str  # stripped; may be empty


@dataclass(frozen=True)
class Ignored:
    """A well-formed interaction we do nothing with (view_closed, shortcuts, others' modals)."""

    type: str


@dataclass(frozen=True)
class Command:
    """A `/slct` request (form fields)."""

    user_id: str
    user_name: str
    team_id: str
    text: str
    trigger_id: str


# -- primitives -----------------------------------------------------------------------------------

def _obj(data: Mapping, key: str, where: str, *, required: bool = False) -> dict | None:
    value = data.get(key)
    if value is None:
        if required:
            raise BadPayload(f"{where}{key} is missing")
        return None
    if not isinstance(value, dict):
        raise BadPayload(f"{where}{key} must be an object")
    return value


def _str(data: Mapping, key: str, where: str, *, limit: int = MAX_ID, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None or (value == "" and not required):
        if required:
            raise BadPayload(f"{where}{key} is missing")
        return None
    if not isinstance(value, str):
        raise BadPayload(f"{where}{key} must be a string")
    if len(value) > limit:
        raise BadPayload(f"{where}{key} is longer than {limit} characters")
    if required and not value:
        raise BadPayload(f"{where}{key} is empty")
    return value


def _user(payload: dict) -> SlackUserRef:
    user = _obj(payload, "user", "", required=True)
    uid = _str(user, "id", "user.", required=True)
    if not SLACK_USER_ID.match(uid):
        raise BadPayload("user.id is not a Slack user id")
    name = _str(user, "username", "user.", limit=MAX_NAME) or _str(user, "name", "user.", limit=MAX_NAME) or ""
    team = _str(user, "team_id", "user.")
    if team is None:
        team_obj = _obj(payload, "team", "")
        team = _str(team_obj, "id", "team.") if team_obj is not None else None
    if team is not None and not SLACK_TEAM_ID.match(team):
        raise BadPayload("the team id is not a Slack team id")
    return SlackUserRef(uid, name, team or "")


# -- interactivity ---------------------------------------------------------------------------------

def parse_interactivity(raw: Any) -> BlockActions | AnswerSubmission | Ignored:
    """The `payload` form field of an interactivity request."""
    if not isinstance(raw, str) or not raw:
        raise BadPayload("no payload")
    if len(raw) > MAX_PAYLOAD:
        raise BadPayload("payload too large")
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested past the parser's depth
        raise BadPayload("payload is not JSON") from None
    if not isinstance(payload, dict):
        raise BadPayload("payload must be an object")
    kind = payload.get("type")
    if not isinstance(kind, str):
        raise BadPayload("payload type must be a string")
    if kind == "block_actions":
        return _block_actions(payload)
    if kind == "view_submission":
        return _view_submission(payload)
    return Ignored(kind[:MAX_ID])


def _block_actions(payload: dict) -> BlockActions:
    user = _user(payload)
    container = _obj(payload, "container", "") or {}
    channel = _obj(payload, "channel", "") or {}
    message = _obj(payload, "message", "") or {}
    channel_id = _str(container, "channel_id", "container.") or _str(channel, "id", "channel.")
    message_ts = _str(container, "message_ts", "container.") or _str(message, "ts", "message.")
    trigger_id = _str(payload, "trigger_id", "")
    raw_actions = payload.get("actions")
    if raw_actions is None:
        raw_actions = []
    if not isinstance(raw_actions, list):
        raise BadPayload("actions must be a list")
    if len(raw_actions) > MAX_ACTIONS:
        raise BadPayload(f"more than {MAX_ACTIONS} actions")
    actions = []
    for i, a in enumerate(raw_actions):
        where = f"actions[{i}]."
        if not isinstance(a, dict):
            raise BadPayload(f"actions[{i}] must be an object")
        selected = _obj(a, "selected_option", where)
        actions.append(Action(
            action_id=_str(a, "action_id", where, required=True),
            block_id=_str(a, "block_id", where),
            value=_str(a, "value", where, limit=MAX_VALUE),
            selected_value=_str(selected, "value", where + "selected_option.", limit=MAX_VALUE)
            if selected is not None else None,
            action_ts=_str(a, "action_ts", where),
        ))
    return BlockActions(user, channel_id, message_ts, trigger_id, tuple(actions))


def _view_submission(payload: dict) -> AnswerSubmission | Ignored:
    view = _obj(payload, "view", "", required=True)
    callback = _str(view, "callback_id", "view.")
    if callback != blocks.ASK_CALLBACK:
        return Ignored("view_submission")
    user = _user(payload)
    metadata = _str(view, "private_metadata", "view.", limit=MAX_METADATA, required=True)
    if not metadata.isascii() or not metadata.isdigit() or len(metadata) > 18:
        raise BadPayload("view.private_metadata is not a question id")
    state = _obj(view, "state", "view.") or {}
    values = _obj(state, "values", "view.state.") or {}
    block = _obj(values, blocks.ANSWER_BLOCK, "view.state.values.") or {}
    field = _obj(block, blocks.ANSWER_ACTION, f"view.state.values.{blocks.ANSWER_BLOCK}.") or {}
    text = _str(field, "value", "the answer's ", limit=MAX_ANSWER) or ""
    return AnswerSubmission(user, int(metadata), text.strip())


# -- the slash command -----------------------------------------------------------------------------

def parse_command(form: Mapping[str, Any]) -> Command:
    """The form fields of a `/slct` request."""
    user_id = _str(form, "user_id", "", required=True)
    if not SLACK_USER_ID.match(user_id):
        raise BadPayload("user_id is not a Slack user id")
    team_id = _str(form, "team_id", "") or ""
    if team_id and not SLACK_TEAM_ID.match(team_id):
        raise BadPayload("team_id is not a Slack team id")
    return Command(
        user_id=user_id,
        user_name=_str(form, "user_name", "", limit=MAX_NAME) or "",
        team_id=team_id,
        text=_str(form, "text", "", limit=MAX_COMMAND_TEXT) or "",
        trigger_id=_str(form, "trigger_id", "") or "",
    )
