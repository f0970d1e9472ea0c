"""The interactivity endpoint: signatures, exactly-once delivery, ephemeral replies, modals, choices."""
from __future__ import annotations

import json
import time

import pytest
from slack_sdk.signature import SignatureVerifier

import tests.slack.workflows  # noqa: F401
from slack_integration.models import SlackMessage, Status
from slct_workflows.models import Event, ExternalSend
from tests.slack.conftest import (
    SECRET, actions_block, button, click, click_payload, post_signed, slack_signature,
)

pytestmark = pytest.mark.django_db

URL = "/slack/interactivity/"


def approve_body(call, **kw) -> dict:
    return {"payload": json.dumps(click_payload(call, button(call, "slct_approve"), **kw))}


def nothing_delivered(pid: str) -> None:
    assert not ExternalSend.objects.exists()
    assert SlackMessage.objects.get(process_id=pid).status == Status.OPEN


@pytest.fixture
def waiting(runner, slack_settings, fake_slack):
    pid = runner.start("expense", {"amount": 42})
    return pid, fake_slack.calls_to("chat.postMessage")[0]


def test_our_signature_helper_matches_slack_sdk():
    body = b"payload=%7B%7D"
    ts = int(time.time())
    assert SignatureVerifier(SECRET).generate_signature(timestamp=str(ts), body=body) == slack_signature(SECRET, ts, body)


def test_forged_signature_is_refused_and_delivers_nothing(runner, waiting, client):
    pid, call = waiting
    r = post_signed(client, URL, approve_body(call), signature="v0=" + "0" * 64)
    assert r.status_code == 401
    r = post_signed(client, URL, approve_body(call), secret="not-the-secret")
    assert r.status_code == 401
    runner.run()
    nothing_delivered(pid)
    assert runner.process(pid).status == "running"


def test_stale_timestamp_is_refused_even_when_correctly_signed(runner, waiting, client):
    pid, call = waiting
    r = post_signed(client, URL, approve_body(call), timestamp=int(time.time()) - 6 * 60)
    assert r.status_code == 401
    r = post_signed(client, URL, approve_body(call), timestamp=int(time.time()) + 6 * 60)
    assert r.status_code == 401
    runner.run()
    nothing_delivered(pid)


def test_missing_headers_tampered_body_and_missing_secret_are_refused(runner, waiting, client, settings):
    pid, call = waiting
    assert post_signed(client, URL, approve_body(call), headers=False).status_code == 401
    # signed for one body, sent with another (a different user)
    ts = int(time.time())
    from urllib.parse import urlencode

    signed_for = urlencode(approve_body(call, user="U1")).encode()
    r = client.post(URL, data=urlencode(approve_body(call, user="U2")), content_type="application/x-www-form-urlencoded",
                    HTTP_X_SLACK_REQUEST_TIMESTAMP=str(ts), HTTP_X_SLACK_SIGNATURE=slack_signature(SECRET, ts, signed_for))
    assert r.status_code == 401
    r = client.post(URL, data="x", content_type="application/x-www-form-urlencoded",
                    HTTP_X_SLACK_REQUEST_TIMESTAMP="yesterday", HTTP_X_SLACK_SIGNATURE="v0=abc")
    assert r.status_code == 401
    settings.SLACK_SIGNING_SECRET = ""
    assert post_signed(client, URL, approve_body(call)).status_code == 401
    assert client.get(URL).status_code == 405
    runner.run()
    nothing_delivered(pid)


def test_the_same_click_twice_resumes_once_and_the_repeat_gets_an_ephemeral(runner, waiting, client, fake_slack):
    pid, call = waiting
    body = approve_body(call, user="U1", username="ann")
    assert post_signed(client, URL, body).status_code == 200
    assert post_signed(client, URL, body).status_code == 200  # a Slack retry: the very same request
    runner.run()
    runner.assert_finished(pid, {"approved": True, "by": "U1", "timed_out": False})
    assert ExternalSend.objects.count() == 1
    assert Event.objects.filter(process_id=pid, method="Main_CheckApprove").count() == 1
    eph = fake_slack.calls_to("chat.postEphemeral", ok_only=True)
    assert len(eph) == 1 and eph[0].params["user"] == "U1"
    assert "already" in eph[0].params["text"] and "Approved by <@U1>" in eph[0].params["text"]
    # Only the first delivery updated the message (the repeat queues no second chat.update).
    assert len(fake_slack.calls_to("chat.update", ok_only=True)) == 1


def test_a_double_click_is_answered_once(runner, waiting, client, fake_slack):
    pid, call = waiting
    first = click(client, call, button(call, "slct_approve"), user="U1", action_ts="1700000100.000001")
    again = click(client, call, button(call, "slct_approve"), user="U1", action_ts="1700000100.400000")
    assert first.status_code == again.status_code == 200
    runner.run()
    assert Event.objects.filter(process_id=pid, method="Main_CheckApprove").count() == 1
    assert runner.process(pid).output["approved"] is True
    assert len(fake_slack.calls_to("chat.postEphemeral", ok_only=True)) == 1


def test_a_second_approver_after_the_first_changes_nothing(runner, waiting, client, fake_slack):
    pid, call = waiting
    assert click(client, call, button(call, "slct_approve"), user="U1").status_code == 200
    runner.run()
    # The second approver clicks Reject on a message that still shows buttons in their client.
    assert click(client, call, button(call, "slct_reject"), user="U2").status_code == 200
    # ...and Approve too
    assert click(client, call, button(call, "slct_approve"), user="U2").status_code == 200
    runner.run()
    runner.assert_finished(pid, {"approved": True, "by": "U1", "timed_out": False})
    m = SlackMessage.objects.get(process_id=pid)
    assert (m.status, m.answered_by) == (Status.ANSWERED, "U1")
    eph = fake_slack.calls_to("chat.postEphemeral", ok_only=True)
    assert [e.params["user"] for e in eph] == ["U2", "U2"]
    assert all("already answered" in e.params["text"] and "<@U1>" in e.params["text"] for e in eph)


def test_two_racing_answers_before_the_status_is_updated_deliver_once(runner, waiting, client, fake_slack):
    """Both clicks pass the status check (the message row still says open); the engine's
    idempotent send lets exactly one through."""
    pid, call = waiting
    from slack_integration import identity, services

    m = SlackMessage.objects.get(process_id=pid)
    v1 = services.answer_value(m, approved=True, answered_at=runner.now())
    v2 = services.answer_value(m, approved=False, answered_at=runner.now())
    assert services.deliver_answer(m, v1, "slack:k1", identity.slack_answer("U1", name="a")) == services.DELIVERED
    SlackMessage.objects.filter(pk=m.pk).update(status=Status.OPEN)  # pretend the second saw it open
    assert services.deliver_answer(m, v2, "slack:k2", identity.slack_answer("U2", name="b")) == services.ALREADY_ANSWERED
    runner.run()
    assert runner.process(pid).output["by"] == "U1"


def test_the_acknowledgement_does_not_wait_for_slack(runner, waiting, client, fake_slack):
    pid, call = waiting
    for method in ("chat.update", "chat.postEphemeral", "chat.postMessage"):
        fake_slack.delay(method, 4.0)
    started = time.monotonic()
    assert click(client, call, button(call, "slct_approve"), user="U1").status_code == 200
    assert click(client, call, button(call, "slct_approve"), user="U2").status_code == 200
    assert time.monotonic() - started < 3.0
    assert ExternalSend.objects.count() == 1


def test_unknown_messages_and_foreign_actions_deliver_nothing(runner, waiting, client):
    pid, call = waiting
    payload = click_payload(call, button(call, "slct_approve"))
    payload["container"]["message_ts"] = "1.000"  # not our message's ts
    payload["message"]["ts"] = "1.000"
    assert post_signed(client, URL, {"payload": json.dumps(payload)}).status_code == 200
    payload = click_payload(call, button(call, "slct_approve"))
    payload["actions"][0]["action_id"] = "someone_elses_button"
    assert post_signed(client, URL, {"payload": json.dumps(payload)}).status_code == 200
    assert post_signed(client, URL, {"payload": "not json"}).status_code == 400
    assert post_signed(client, URL, {"payload": json.dumps({"type": "view_closed"})}).status_code == 200
    runner.run()
    nothing_delivered(pid)


def test_ask_opens_a_modal_and_the_submission_is_the_answer(runner, slack_settings, fake_slack, client):
    pid = runner.start("slack-test-ask", {"text": "Why is the build red?", "channel": "#dev"})
    call = fake_slack.calls_to("chat.postMessage")[0]
    r = click(client, call, button(call, "slct_ask_open"), user="U3", trigger_id="trig-123")
    assert r.status_code == 200
    opened = fake_slack.calls_to("views.open", ok_only=True)
    assert len(opened) == 1 and opened[0].params["trigger_id"] == "trig-123"
    view = opened[0].params["view"]
    assert view["type"] == "modal" and view["callback_id"] == "slct_ask"
    assert "Why is the build red?" in json.dumps(view["blocks"])
    runner.run()
    assert runner.process(pid).status == "running"  # opening the form answers nothing
    submission = {
        "type": "view_submission", "user": {"id": "U3", "username": "carol"}, "team": {"id": "T1"},
        "view": {**view, "id": "V1", "state": {"values": {"slct_answer": {"slct_answer": {
            "type": "plain_text_input", "value": "  a flaky test  "}}}}},
    }
    r = post_signed(client, URL, {"payload": json.dumps(submission)})
    assert r.status_code == 200 and r.content == b""  # an empty 200 closes the modal
    runner.run()
    out = runner.process(pid).output
    assert (out["text"], out["user"], out["user_name"], out["timed_out"]) == ("a flaky test", "U3", "carol", False)
    m = SlackMessage.objects.get(process_id=pid)
    shown = fake_slack.messages[(m.slack_channel, m.ts)]
    assert "<@U3> answered" in shown["text"] and "a flaky test" in shown["text"]
    assert not [b for b in shown["blocks"] if b["type"] == "actions"]
    # Submitting the same form again delivers nothing new.
    assert post_signed(client, URL, {"payload": json.dumps(submission)}).status_code == 200
    runner.run()
    assert Event.objects.filter(process_id=pid, method="Main_Answered").count() == 1
    # An empty answer is refused inside the modal.
    submission["view"]["state"]["values"]["slct_answer"]["slct_answer"]["value"] = " "
    r = post_signed(client, URL, {"payload": json.dumps(submission)})
    assert r.json()["response_action"] == "errors"


def test_choose_with_buttons(runner, slack_settings, fake_slack, client):
    pid = runner.start("slack-test-choose", {"options": ["red", ("g", "green"), {"value": "b", "label": "blue"}],
                                             "channel": "#paint"})
    call = fake_slack.calls_to("chat.postMessage")[0]
    labels = [e["text"]["text"] for e in actions_block(call.params["blocks"])["elements"]]
    assert labels == ["red", "green", "blue"]
    assert click(client, call, button(call, "slct_choose_1"), user="U4").status_code == 200
    runner.run()
    out = runner.process(pid).output
    assert (out["choice"], out["text"], out["user"]) == ("g", "green", "U4")
    m = SlackMessage.objects.get(process_id=pid)
    assert "<@U4> chose *green*" in fake_slack.messages[(m.slack_channel, m.ts)]["text"]


def test_choose_with_many_options_uses_a_menu(runner, slack_settings, fake_slack, client):
    options = [f"option {i}" for i in range(8)]
    pid = runner.start("slack-test-choose", {"options": options, "channel": "#paint"})
    call = fake_slack.calls_to("chat.postMessage")[0]
    (menu,) = actions_block(call.params["blocks"])["elements"]
    assert menu["type"] == "static_select" and len(menu["options"]) == 8
    selected = menu["options"][6]
    assert click(client, call, menu, user="U4", selected=selected).status_code == 200
    runner.run()
    assert runner.process(pid).output["choice"] == "option 6"


# -- malformed but signed payloads: 400, nothing changes (issue 12) ----------------------------------

def _mutations():
    """(id, change) pairs: each takes a valid click payload (a dict) and returns the payload to send
    (any JSON value). Every one of them crashed a view (500) or was read without a check before."""
    def setting(path, value):
        def change(p):
            target = p
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            return p
        return change

    return [
        ("actions-5", setting(["actions"], 5)),
        ("actions-[5]", setting(["actions"], [5])),
        ("actions-str", setting(["actions"], "slct_approve")),
        ("actions-too-many", lambda p: {**p, "actions": p["actions"] * 30}),
        ("action_id-5", setting(["actions", 0, "action_id"], 5)),
        ("action_id-missing", lambda p: {**p, "actions": [{k: v for k, v in p["actions"][0].items() if k != "action_id"}]}),
        ("block_id-list", setting(["actions", 0, "block_id"], ["slct:1"])),
        ("value-huge", setting(["actions", 0, "value"], "x" * 100_000)),
        ("value-dict", setting(["actions", 0, "value"], {"v": 1})),
        ("selected_option-str", setting(["actions", 0, "selected_option"], "0")),
        ("selected_option.value-int", setting(["actions", 0, "selected_option"], {"value": 0})),
        ("action_ts-float", setting(["actions", 0, "action_ts"], 1700000100.5)),
        ("user-str", setting(["user"], "U1")),
        ("user-5", setting(["user"], 5)),
        ("user-missing", lambda p: {k: v for k, v in p.items() if k != "user"}),
        ("user.id-5", setting(["user", "id"], 5)),
        ("user.id-not-an-id", setting(["user", "id"], "../../admin")),
        ("user.username-list", setting(["user", "username"], ["boss"])),
        ("user.team_id-bad", setting(["user", "team_id"], "nope")),
        ("container-str", setting(["container"], "x")),
        ("container.message_ts-5", setting(["container", "message_ts"], 5)),
        ("channel-str", setting(["channel"], "C1")),
        ("message-list", setting(["message"], [])),
        ("trigger_id-dict", setting(["trigger_id"], {})),
        ("type-5", setting(["type"], 5)),
        ("payload-list", lambda p: [p]),
        ("payload-str", lambda p: "block_actions"),
        ("payload-null", lambda p: None),
        ("payload-deep", lambda p: "DEEP"),
    ]


MUTATIONS = _mutations()


@pytest.mark.parametrize("change", [c for _, c in MUTATIONS], ids=[i for i, _ in MUTATIONS])
def test_malformed_block_actions_get_400_and_change_nothing(runner, waiting, client, fake_slack, change):
    pid, call = waiting
    payload = change(click_payload(call, button(call, "slct_approve"), user="U1"))
    raw = "[" * 50_000 if payload == "DEEP" else json.dumps(payload)
    before = len(fake_slack.calls)
    r = post_signed(client, URL, {"payload": raw})
    assert r.status_code == 400, r.content
    assert r["Content-Type"].startswith("text/plain") and len(r.content) < 400
    runner.run()
    nothing_delivered(pid)
    assert len(fake_slack.calls) == before  # no ephemeral, no update
    assert runner.process(pid).status == "running"


def _submission(view: dict, user: str = "U3") -> dict:
    return {
        "type": "view_submission", "user": {"id": user, "username": "carol"}, "team": {"id": "T1"},
        "view": {**view, "id": "V1", "state": {"values": {"slct_answer": {"slct_answer": {
            "type": "plain_text_input", "value": "an answer"}}}}},
    }


@pytest.fixture
def asking(runner, slack_settings, fake_slack, client):
    pid = runner.start("slack-test-ask", {"text": "Why?", "channel": "#dev"})
    call = fake_slack.calls_to("chat.postMessage")[0]
    assert click(client, call, button(call, "slct_ask_open"), user="U3", trigger_id="trig-9").status_code == 200
    view = fake_slack.calls_to("views.open", ok_only=True)[0].params["view"]
    return pid, view


@pytest.mark.parametrize("path,value", [
    (["view"], "x"),
    (["view"], None),
    (["view", "private_metadata"], "not-a-number"),
    (["view", "private_metadata"], "1; DROP TABLE"),
    (["view", "private_metadata"], "9" * 40),
    (["view", "private_metadata"], 5),
    (["view", "private_metadata"], "٣"),  # a digit, but not an ASCII one
    (["view", "state"], "x"),
    (["view", "state", "values"], 5),
    (["view", "state", "values", "slct_answer"], []),
    (["view", "state", "values", "slct_answer", "slct_answer"], "x"),
    (["view", "state", "values", "slct_answer", "slct_answer", "value"], 42),
    (["view", "state", "values", "slct_answer", "slct_answer", "value"], "x" * 5000),
    (["view", "callback_id"], 7),
    (["user"], "U3"),
    (["team"], "T1"),
], ids=lambda v: json.dumps(v)[:40])
def test_malformed_view_submissions_get_400_and_change_nothing(runner, asking, client, path, value):
    pid, view = asking
    payload = _submission(view)
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    r = post_signed(client, URL, {"payload": json.dumps(payload)})
    assert r.status_code == 400, r.content
    runner.run()
    nothing_delivered(pid)


def test_missing_or_empty_payload_is_400(runner, waiting, client):
    pid, _ = waiting
    assert post_signed(client, URL, {}).status_code == 400
    assert post_signed(client, URL, {"payload": ""}).status_code == 400
    assert post_signed(client, URL, {"payload": "x" * 1_100_000}).status_code == 400
    runner.run()
    nothing_delivered(pid)


def test_someone_elses_modal_and_unknown_types_are_acknowledged(runner, asking, client):
    pid, view = asking
    other = _submission({**view, "callback_id": "another_apps_modal", "private_metadata": "whatever"})
    assert post_signed(client, URL, {"payload": json.dumps(other)}).status_code == 200
    assert post_signed(client, URL, {"payload": json.dumps({"type": "shortcut", "user": 5})}).status_code == 200
    runner.run()
    nothing_delivered(pid)


# -- who answered: from what the server verified, never from the value ------------------------------

def test_answered_by_comes_from_the_verified_provenance(runner, waiting, client, link, fake_slack):
    pid, call = waiting
    link("U777", username="bob")
    assert click(client, call, button(call, "slct_approve"), user="U777", username="bobby").status_code == 200
    runner.run()
    out = runner.process(pid).output
    assert out == {"approved": True, "by": "U777", "timed_out": False}
    send = ExternalSend.objects.get()
    # The value says what was answered; who answered is the send's provenance only.
    assert "user" not in send.value and "via" not in send.value
    assert send.sender == {"via": "slack", "user": "bob", "user_id": send.sender["user_id"], "slack_user": "U777",
                           "answer": True, "name": "bobby"}
    m = SlackMessage.objects.get(process_id=pid)
    assert (m.answered_by, m.answered_by_name, m.answered_via) == ("U777", "bobby", "slack")
    ran = Event.objects.get(process_id=pid, method="Main_CheckApprove")
    assert ran.source["sender"]["slack_user"] == "U777"


def test_approvers_are_matched_by_verified_slack_id_only(runner, slack_settings, fake_slack, client, link):
    """Issue 12: `is_allowed` also matched names; a Slack user named like an approver (or linked to
    a Django user of that name) answered in their place."""
    pid = runner.start("slack-test-approve", {"channel": "#finance", "approvers": ["UBOSS"]})
    call = fake_slack.calls_to("chat.postMessage")[0]
    link("UEVIL", username="UBOSS")
    assert click(client, call, button(call, "slct_approve"), user="UEVIL", username="UBOSS").status_code == 200
    runner.run()
    assert runner.process(pid).status == "running"
    nothing_delivered(pid)
    eph = fake_slack.calls_to("chat.postEphemeral", ok_only=True)
    assert [e.params["user"] for e in eph] == ["UEVIL"] and "only <@UBOSS>" in eph[0].params["text"]
    assert click(client, call, button(call, "slct_approve"), user="UBOSS", username="boss").status_code == 200
    runner.run()
    out = runner.process(pid).output
    assert (out["approved"], out["user"], out["user_name"], out["via"]) == (True, "UBOSS", "boss", "slack")


def test_approvers_must_be_slack_ids(runner, slack_settings, fake_slack):
    pid = runner.start("slack-test-approve", {"channel": "#finance", "approvers": ["alice"]})
    runner.assert_failed(pid, "approvers must be Slack user ids like U012ABCDEF (not names)")
    assert fake_slack.calls == []


def test_without_approvers_anyone_in_the_slack_channel_answers_linked_or_not(runner, waiting, client):
    pid, call = waiting
    assert click(client, call, button(call, "slct_reject"), user="UANYONE", username="any").status_code == 200
    runner.run()
    out = runner.process(pid).output
    assert out == {"approved": False, "by": "UANYONE", "timed_out": False}
    assert ExternalSend.objects.get().sender == {"via": "slack", "slack_user": "UANYONE", "answer": True, "name": "any"}
