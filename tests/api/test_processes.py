from datetime import timedelta

import pytest
from django.utils import timezone

from slct_workflows.models import Event, Goroutine, ProcessInstance

from .conftest import counts


def start(api, definition="counter", input=None, id=None, **extra):
    body = {"definition": definition, **extra}
    if input is not None:
        body["input"] = input
    if id is not None:
        body["id"] = id
    return api.post("/api/processes/", body, format="json")


def test_definitions_list_goroutines_and_statuses(api):
    r = api.get("/api/definitions/")
    assert r.status_code == 200
    by_name = {d["name"]: d for d in r.json()}
    assert {"counter", "pingpong", "reminder"} <= set(by_name)
    reminder = {g["name"]: g for g in by_name["reminder"]["goroutines"]}
    assert set(reminder) == {"Main", "Reminder"}
    assert sorted(reminder["Main"]["statuses"]) == ["Answered", "Start"]
    assert sorted(reminder["Reminder"]["methods"]) == ["Reminder_Nudge", "Reminder_Start"]
    assert by_name["reminder"]["goroutines"][0]["name"] == "Main"  # Main first
    counter = by_name["counter"]
    assert sorted(counter["goroutines"][0]["statuses"]) == ["Count", "Done", "Start"]
    assert "counter" in counter["state_fields"] and "Counts values" in counter["description"]


def test_definition_detail_and_unknown(api):
    assert api.get("/api/definitions/counter/").json()["name"] == "counter"
    r = api.get("/api/definitions/nope/")
    assert r.status_code == 404 and r.json() == {"code": "not_found", "detail": "unknown process definition 'nope'"}


def test_start_returns_201_with_process_and_runs(api, run):
    r = start(api, "counter", {"idle_seconds": 60, "channel": "c1"}, id="order-1")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["id"] == "order-1" and body["definition"] == "counter" and body["status"] == "running"
    assert body["input"] == {"idle_seconds": 60, "channel": "c1"}
    assert r["Location"] == "/api/processes/order-1/"
    assert [g["name"] for g in body["goroutines"]] == ["Main"] and body["goroutines"][0]["status"] == "runnable"
    run.run()
    detail = api.get("/api/processes/order-1/").json()
    assert detail["state"]["channel"] == "c1"
    main = detail["goroutines"][0]
    assert main["status"] == "blocked"
    assert [(c["operation"], c["channel"], c["target"]) for c in main["pending_cases"]] == [
        ("recv", "c1", "Main_Count"), ("timer", None, "Main_Done"),
    ]
    deadline = main["pending_cases"][1]["deadline"]
    assert deadline and timezone.datetime.fromisoformat(deadline) > timezone.now() + timedelta(seconds=50)
    assert "to receive on `c1`" in main["waits_for"]
    assert detail["created_at"] and detail["updated_at"] and detail["finished_at"] is None
    run.advance(seconds=61)
    done = api.get("/api/processes/order-1/").json()
    assert done["status"] == "done" and done["output"] == {"count": 0} and done["finished_at"]
    assert done["goroutines"][0]["pending_cases"] == []


def test_start_without_id_generates_one(api):
    r = start(api, "counter")
    assert r.status_code == 201 and len(r.json()["id"]) == 32
    assert ProcessInstance.objects.filter(pk=r.json()["id"]).exists()


def test_start_is_idempotent_by_id_and_input(api):
    first = start(api, "counter", {"idle_seconds": 5}, id="same")
    assert first.status_code == 201
    before = counts()
    again = start(api, "counter", {"idle_seconds": 5}, id="same")
    assert again.status_code == 200 and again.json()["id"] == "same"
    assert again.json()["created_at"] == first.json()["created_at"]
    other = start(api, "counter", {"idle_seconds": 6}, id="same")
    assert other.status_code == 409
    assert other.json()["code"] == "conflict" and "another input" in other.json()["detail"]
    other_def = start(api, "reminder", {"idle_seconds": 5}, id="same")
    assert other_def.status_code == 409 and "another definition" in other_def.json()["detail"]
    assert counts() == before


def test_detail_of_two_goroutines_and_history(api, run):
    pid = start(api, "reminder", {"every": 60, "answers": "ans", "nudges": "nud"}, id="rem").json()["id"]
    run.run()
    detail = api.get(f"/api/processes/{pid}/").json()
    g = {x["name"]: x for x in detail["goroutines"]}
    assert g["Main"]["pending_cases"] == [
        {"operation": "recv", "channel": "ans", "deadline": None, "target": "Main_Answered"},
    ]
    assert g["Reminder"]["pending_cases"][0]["operation"] == "timer"
    assert g["Reminder"]["pending_cases"][0]["target"] == "Reminder_Nudge"
    r = api.post("/api/channels/ans/send/", {"value": "yes"}, format="json", HTTP_IDEMPOTENCY_KEY="k-ans")
    assert r.status_code == 200 and r.json()["status"] == "delivered"
    assert r.json()["delivered_to"] == "rem/Main"
    run.run()
    assert api.get(f"/api/processes/{pid}/").json()["output"] == {"answer": "yes", "reminders": 0}
    h = api.get(f"/api/processes/{pid}/history/")
    assert h.status_code == 200
    events = h.json()["results"]
    assert h.json()["count"] == len(events) == Event.objects.filter(process_id=pid).count()
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert events[0]["kind"] == "start"
    steps = [f'{e["goroutine"]}.{e["method"]}' for e in events if e["kind"] in ("step", "finish")]
    assert steps[:2] == ["Main.Main_Start", "Reminder.Reminder_Start"]
    assert steps[-1] == "Main.Main_Answered"
    assert any(e["value"] == "yes" for e in events)


def test_history_is_paginated(api, run):
    pid = start(api, "counter", {"channel": "many"}).json()["id"]
    run.run()
    for i in range(4):
        assert api.post("/api/channels/many/send/", {"value": i}, format="json",
                        HTTP_IDEMPOTENCY_KEY=f"many-{i}").json()["status"] == "delivered"
        run.run()
    page = api.get(f"/api/processes/{pid}/history/?page_size=2&page=2").json()
    assert page["count"] == 6 and len(page["results"]) == 2
    assert [e["seq"] for e in page["results"]] == [3, 4]
    assert api.get(f"/api/processes/{pid}/history/?page=99").status_code == 404


def test_list_filters_search_and_pagination(api):
    for i in range(3):
        assert start(api, "counter", id=f"cnt-{i}").status_code == 201
    assert start(api, "reminder", id="rem-x").status_code == 201
    ProcessInstance.objects.filter(pk="cnt-0").update(status="done")
    old = timezone.now() - timedelta(days=10)
    ProcessInstance.objects.filter(pk="cnt-1").update(created_at=old)

    def ids(query=""):
        r = api.get(f"/api/processes/{query}")
        assert r.status_code == 200, r.json()
        return [p["id"] for p in r.json()["results"]]

    assert set(ids()) == {"cnt-0", "cnt-1", "cnt-2", "rem-x"}
    assert ids()[-1] == "cnt-1"  # newest first
    assert set(ids("?definition=counter")) == {"cnt-0", "cnt-1", "cnt-2"}
    assert set(ids("?status=running")) == {"cnt-1", "cnt-2", "rem-x"}
    assert set(ids("?status=done&status=running&definition=counter")) == {"cnt-0", "cnt-1", "cnt-2"}
    assert set(ids("?search=CNT")) == {"cnt-0", "cnt-1", "cnt-2"}
    assert ids("?search=rem") == ["rem-x"]
    after = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert "cnt-1" not in ids(f"?created_after={after}") and len(ids(f"?created_after={after}")) == 3
    assert ids(f"?created_before={after}") == ["cnt-1"]
    page = api.get("/api/processes/?page_size=3").json()
    assert page["count"] == 4 and len(page["results"]) == 3 and page["next"]
    assert len(api.get(page["next"]).json()["results"]) == 1


def test_list_rejects_bad_filters(api):
    r = api.get("/api/processes/?status=sleeping")
    assert r.status_code == 400 and r.json()["code"] == "invalid" and "status" in r.json()["fields"]
    r = api.get("/api/processes/?created_after=yesterday")
    assert r.status_code == 400 and "created_after" in r.json()["fields"]
    # an inverted range is empty, not an error (the schema cannot relate two parameters)
    start(api, "counter", id="cnt-x")
    r = api.get("/api/processes/?created_after=2030-01-02T00:00:00Z&created_before=2030-01-01T00:00:00Z")
    assert r.status_code == 200 and r.json()["count"] == 0


def test_cancel_running_process(api, run):
    pid = start(api, "reminder", id="to-cancel").json()["id"]
    run.run()
    r = api.post(f"/api/processes/{pid}/cancel/", {"reason": "not needed"}, format="json")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled" and r.json()["finished_at"]
    assert {g["status"] for g in r.json()["goroutines"]} == {"cancelled"}
    assert all(g["pending_cases"] == [] for g in r.json()["goroutines"])
    last = api.get(f"/api/processes/{pid}/history/").json()["results"][-1]
    assert last["kind"] == "cancel" and last["detail"] == {"reason": "not needed"}
    before = counts()
    again = api.post(f"/api/processes/{pid}/cancel/")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]
    assert counts() == before


def test_retry_failed_process(api, run, flaky):
    pid = start(api, "api-test-flaky", id="flaky-1").json()["id"]
    run.run()
    failed = api.get(f"/api/processes/{pid}/").json()
    assert failed["status"] == "failed" and "flaky step failed" in failed["error"]
    assert failed["goroutines"][0]["status"] == "failed"
    assert "flaky step failed" in failed["goroutines"][0]["last_error"]
    flaky["fail"] = False
    r = api.post(f"/api/processes/{pid}/retry/")
    assert r.status_code == 200 and r.json()["status"] == "running" and r.json()["error"] == ""
    assert r.json()["goroutines"][0]["status"] == "runnable"
    run.run()
    assert api.get(f"/api/processes/{pid}/").json()["output"] == {"ok": True}
    kinds = [e["kind"] for e in api.get(f"/api/processes/{pid}/history/").json()["results"]]
    assert "retry" in kinds
    r = api.post(f"/api/processes/{pid}/retry/")
    assert r.status_code == 409 and "only failed processes" in r.json()["detail"]


def test_cancel_failed_process(api, run, flaky):
    pid = start(api, "api-test-flaky").json()["id"]
    run.run()
    assert ProcessInstance.objects.get(pk=pid).status == "failed"
    r = api.post(f"/api/processes/{pid}/cancel/")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert set(Goroutine.objects.filter(process_id=pid).values_list("status", flat=True)) == {"cancelled"}


@pytest.mark.parametrize("path", ["", "history/", "cancel/", "retry/"])
def test_unknown_process_is_404(api, unchanged, path):
    method = api.get if path in ("", "history/") else api.post
    with unchanged():
        r = method(f"/api/processes/nope/{path}")
    assert r.status_code == 404
    assert r.json() == {"code": "not_found", "detail": "unknown process 'nope'"}


def test_process_ids_are_one_path_segment(api, unchanged):
    # an id with `/` could shadow a route (`x/history` is the history of `x`): ids never contain one
    with unchanged():
        r = start(api, "counter", id="team/a/1")
    assert r.status_code == 400 and "id" in r.json()["fields"]
    # ids that look like sub-resources are plain ids
    for pid in ["history", "cancel", "retry", "send"]:
        assert start(api, "counter", id=pid).status_code == 201
        assert api.get(f"/api/processes/{pid}/").json()["id"] == pid
        assert api.get(f"/api/processes/{pid}/history/").json()["count"] == 1
    assert api.post("/api/processes/history/cancel/").json()["status"] == "cancelled"
    assert api.get("/api/processes/cancel/").json()["status"] == "running"
