"""Fixtures for the Slack tests: the fake Slack Web API, Slack settings, requests signed exactly
as Slack signs them, and real RQ workers that talk to the fake Slack."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest

from tests.conftest import WorkerPool, _worker_env
from tests.slack.fake_slack import TOKEN, FakeSlack

SECRET = "test-signing-secret-8f2c"
WORKFLOWS = "tests.slack.workflows"


@pytest.fixture
def fake_slack():
    fake = FakeSlack().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def slack_settings(settings, fake_slack):
    settings.SLACK_BOT_TOKEN = TOKEN
    settings.SLACK_SIGNING_SECRET = SECRET
    settings.SLACK_API_URL = fake_slack.url
    settings.SLACK_DEFAULT_CHANNEL = "#general"
    settings.SLACK_COMMAND_USERS = ""
    settings.SLACK_USER_MAP = ""
    return settings


@pytest.fixture
def link(django_user_model):
    """`link("U1", "add_externalsend", username="ann")`: a Django user with those
    slct_workflows permissions, linked to the Slack user id (admin → Slack users)."""
    from django.contrib.auth.models import Permission

    from slack_integration.models import SlackUser

    def make(slack_id: str, *codenames: str, username: str | None = None, team: str = "", **fields):
        user = django_user_model.objects.create_user(username or f"user-{slack_id.lower()}", **fields)
        if codenames:
            perms = Permission.objects.filter(content_type__app_label="slct_workflows", codename__in=codenames)
            assert perms.count() == len(codenames), codenames
            user.user_permissions.add(*perms)
        SlackUser.objects.create(slack_user_id=slack_id, team_id=team, user=user)
        return user

    return make


@pytest.fixture
def no_slack_credentials(settings):
    settings.SLACK_BOT_TOKEN = ""
    settings.SLACK_SIGNING_SECRET = ""
    settings.SLACK_DEFAULT_CHANNEL = ""
    return settings


def slack_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """Slack's v0 signature: HMAC-SHA256 over "v0:{timestamp}:{body}", hex, prefixed "v0="."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def post_signed(client, path: str, fields: dict, *, secret: str = SECRET, timestamp: int | None = None,
                signature: str | None = None, headers: bool = True):
    """POST form fields to our endpoint the way Slack does (form-encoded, signed)."""
    body = urlencode(fields)
    ts = int(time.time()) if timestamp is None else timestamp
    extra = {}
    if headers:
        extra = {
            "HTTP_X_SLACK_REQUEST_TIMESTAMP": str(ts),
            "HTTP_X_SLACK_SIGNATURE": signature or slack_signature(secret, ts, body.encode()),
        }
    return client.post(path, data=body, content_type="application/x-www-form-urlencoded", **extra)


def actions_block(posted_blocks: list[dict]) -> dict:
    blocks = [b for b in posted_blocks if b.get("type") == "actions"]
    assert len(blocks) == 1, f"expected one actions block in {posted_blocks}"
    return blocks[0]


def click_payload(call, element: dict, *, user: str = "U123", username: str = "alice",
                  trigger_id: str = "13345224609.738474920.8088930838d88f008e0", action_ts: str = "1700000100.000200",
                  selected: dict | None = None) -> dict:
    """A block_actions payload as Slack sends it when `user` clicks `element` of the message the
    fake Slack received in `call` (a chat.postMessage)."""
    channel, ts = call.response["channel"], call.response["ts"]
    block = next(b for b in call.params["blocks"] if element in b.get("elements", []))
    action = {
        "action_id": element["action_id"], "block_id": block["block_id"], "type": element["type"],
        "action_ts": action_ts,
    }
    if element["type"] == "button":
        action["text"] = element["text"]
        action["value"] = element.get("value")
    if selected is not None:
        action["selected_option"] = selected
    return {
        "type": "block_actions",
        "user": {"id": user, "username": username, "name": username, "team_id": "T1"},
        "api_app_id": "A1", "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
        "trigger_id": trigger_id,
        "team": {"id": "T1", "domain": "acme"},
        "channel": {"id": channel, "name": "finance"},
        "message": {"type": "message", "ts": ts, "text": call.params.get("text"), "blocks": call.params["blocks"]},
        "response_url": "https://hooks.slack.com/actions/T1/1/xyz",
        "actions": [action],
    }


def click(client, call, element: dict, **kwargs):
    payload = click_payload(call, element, **kwargs)
    return post_signed(client, "/slack/interactivity/", {"payload": json.dumps(payload)})


def button(call, action_id: str) -> dict:
    for el in actions_block(call.params["blocks"])["elements"]:
        if el["action_id"] == action_id:
            return el
    raise AssertionError(f"no element {action_id} in {call.params['blocks']}")


@pytest.fixture
def slack_worker(transactional_db, clean_redis, tmp_path, fake_slack, slack_settings):
    """A real `manage.py rqworker` (with the scheduler) whose Slack client talks to the fake Slack."""
    pool = WorkerPool(_worker_env(), tmp_path)
    pool.start(1, extra_env={
        "SLACK_API_URL": fake_slack.url, "SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_DEFAULT_CHANNEL": "#general", "SLCT_WORKFLOW_MODULES": WORKFLOWS,
    })
    try:
        yield pool
    finally:
        pool.stop_all()
        from django.db import connection

        if connection.vendor == "sqlite":
            time.sleep(0.1)
