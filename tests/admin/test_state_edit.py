"""Editing a process's state from the admin: a deliberate, confirmed, recorded action."""
from __future__ import annotations

import html
import json

from slct_workflows.models import Event, ProcessInstance

from .conftest import messages_of

P = "/admin/slct_workflows/processinstance"


def test_the_state_form_shows_the_state_and_needs_confirmation(run, admin_client_):
    pid = run.start("reminder")
    proc = ProcessInstance.objects.get(pk=pid)
    page = admin_client_.get(f"{P}/{pid}/change/").content.decode()
    assert f"{P}/{pid}/state/" in page  # linked from the process page
    r = admin_client_.get(f"{P}/{pid}/state/")
    assert r.status_code == 200 and "\"reminders\": 0" in html.unescape(r.content.decode())
    edited = json.dumps({**proc.state, "reminders": 7})
    r = admin_client_.post(f"{P}/{pid}/state/", {"state": edited, "reason": "r", "step_count": proc.step_count})
    assert r.status_code == 400  # no confirmation ticked
    assert ProcessInstance.objects.get(pk=pid).state["reminders"] == 0
    r = admin_client_.post(f"{P}/{pid}/state/", {"state": "{not json", "reason": "r", "confirm": "on",
                                                 "step_count": proc.step_count})
    assert r.status_code == 400 and "not valid JSON" in r.content.decode()

    r = admin_client_.post(f"{P}/{pid}/state/", {"state": edited, "reason": "ops ticket 12", "confirm": "on",
                                                 "step_count": proc.step_count}, follow=True)
    assert ("success", f"The state of process {pid} was replaced (recorded in its history).") in messages_of(r)
    assert ProcessInstance.objects.get(pk=pid).state["reminders"] == 7
    assert Event.objects.get(process_id=pid, kind="state").detail["reason"] == "ops ticket 12"


def test_a_stale_form_is_refused_with_a_message(run, admin_client_):
    pid = run.start("reminder")
    proc = ProcessInstance.objects.get(pk=pid)
    run.send("answers", "yes")  # the process moves on after the form was shown
    r = admin_client_.post(f"{P}/{pid}/state/", {"state": json.dumps(proc.state), "reason": "late", "confirm": "on",
                                                 "step_count": proc.step_count}, follow=True)
    [(level, text)] = messages_of(r)
    assert level == "error" and "Could not edit the state" in text
    assert not Event.objects.filter(process_id=pid, kind="state").exists()


def test_editing_state_needs_change_processinstance(run, make_client):
    pid = run.start("reminder")
    client = make_client("view_processinstance")
    assert client.get(f"{P}/{pid}/state/").status_code == 403
    assert client.post(f"{P}/{pid}/state/", {"state": "{}", "reason": "x", "confirm": "on", "step_count": 0}).status_code == 403
