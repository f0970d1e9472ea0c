import pytest

from slct_workflows.models import BufferedValue, Channel, ExternalSend, PendingCase

from .conftest import counts


def send(api, name, value, key, **body):
    return api.post(f"/api/channels/{name}/send/", {"value": value, **body}, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_create_list_and_detail(api):
    r = api.post("/api/channels/", {"name": "jobs", "capacity": 2}, format="json")
    assert r.status_code == 201, r.json()
    assert r.json() == {
        "name": "jobs", "capacity": 2, "closed": False, "owner": "", "policy": "open",
        "created_at": r.json()["created_at"], "closed_at": None, "buffer": [], "receivers": [], "senders": [],
    }
    assert r["Location"] == "/api/channels/jobs/"
    gen = api.post("/api/channels/", {}, format="json")
    assert gen.status_code == 201 and gen.json()["name"].startswith("chan-") and gen.json()["capacity"] == 0
    assert Channel.objects.filter(pk=gen.json()["name"], capacity=0).exists()
    names = [c["name"] for c in api.get("/api/channels/").json()["results"]]
    assert names == sorted(names) and {"jobs", gen.json()["name"]} <= set(names)
    assert [c["name"] for c in api.get("/api/channels/?search=JOB").json()["results"]] == ["jobs"]
    assert api.get("/api/channels/jobs/").json()["capacity"] == 2
    dup = api.post("/api/channels/", {"name": "jobs", "capacity": 5}, format="json")
    assert dup.status_code == 409 and dup.json()["detail"] == "channel 'jobs' already exists"
    assert Channel.objects.get(pk="jobs").capacity == 2


def test_closed_filter(api):
    api.post("/api/channels/", {"name": "open1"}, format="json")
    api.post("/api/channels/", {"name": "shut1"}, format="json")
    api.post("/api/channels/shut1/close/")
    assert [c["name"] for c in api.get("/api/channels/?closed=true").json()["results"]] == ["shut1"]
    assert [c["name"] for c in api.get("/api/channels/?closed=false").json()["results"]] == ["open1"]
    assert len(api.get("/api/channels/").json()["results"]) == 2
    assert api.get("/api/channels/?closed=maybe").status_code == 400


def test_send_delivered_to_waiting_receiver(api, run):
    body = {"definition": "counter", "input": {"channel": "cnt"}}
    pid = api.post("/api/processes/", body, format="json").json()["id"]
    run.run()
    detail = api.get("/api/channels/cnt/").json()
    assert detail["receivers"] == [{"process": pid, "goroutine": "Main", "target": "Main_Count"}]
    r = send(api, "cnt", {"n": 1}, "key-1")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "delivered" and body["repeated"] is False and body["delivered_to"] == f"{pid}/Main"
    assert body["key"] == "key-1" and body["channel"] == "cnt" and body["value"] == {"n": 1}
    run.run()
    assert api.get(f"/api/processes/{pid}/").json()["state"]["values"] == [{"n": 1}]
    # the same key again: the first answer, nothing delivered again
    again = send(api, "cnt", {"n": 1}, "key-1")
    assert again.status_code == 200 and again.json()["status"] == "delivered" and again.json()["repeated"] is True
    run.run()
    assert api.get(f"/api/processes/{pid}/").json()["state"]["counter"] == 1
    assert ExternalSend.objects.count() == 1
    # the same key with another value is a conflict
    before = counts()
    other = send(api, "cnt", {"n": 2}, "key-1")
    assert other.status_code == 409 and "already used" in other.json()["detail"]
    assert counts() == before
    assert api.get("/api/sends/key-1/").json()["status"] == "delivered"


def test_send_buffered(api):
    api.post("/api/channels/", {"name": "buf", "capacity": 2}, format="json")
    assert send(api, "buf", 1, "b1").json()["status"] == "buffered"
    r = send(api, "buf", [2, "two"], "b2")
    assert r.status_code == 200 and r.json()["status"] == "buffered"
    assert api.get("/api/channels/buf/").json()["buffer"] == [1, [2, "two"]]
    assert list(BufferedValue.objects.filter(channel="buf").values_list("value", flat=True)) == [1, [2, "two"]]
    repeat = send(api, "buf", 1, "b1")
    assert repeat.status_code == 200 and repeat.json()["status"] == "buffered" and repeat.json()["repeated"]
    assert BufferedValue.objects.filter(channel="buf").count() == 2
    # full: with wait false it is refused; the refusal is remembered under the key
    before = BufferedValue.objects.count()
    full = send(api, "buf", 3, "b3", wait=False)
    assert full.status_code == 409 and full.json()["code"] == "no_receiver"
    assert send(api, "buf", 3, "b3", wait=False).json()["code"] == "no_receiver"
    assert BufferedValue.objects.count() == before and PendingCase.objects.count() == 0


def test_send_waits_then_is_received(api, run):
    api.post("/api/channels/", {"name": "rv"}, format="json")
    r = send(api, "rv", "hello", "w1")
    assert r.status_code == 202 and r.json()["status"] == "waiting" and r["Location"] == "/api/sends/w1/"
    detail = api.get("/api/channels/rv/").json()
    assert detail["senders"] == [{"external_send": "w1", "value": "hello"}]
    assert api.get("/api/sends/w1/").json()["status"] == "waiting"
    pid = api.post("/api/processes/", {"definition": "counter", "input": {"channel": "rv"}}, format="json").json()["id"]
    run.run()
    got = api.get("/api/sends/w1/").json()
    assert got["status"] == "received" and got["delivered_at"]
    assert api.get(f"/api/processes/{pid}/").json()["state"]["values"] == ["hello"]
    assert api.get("/api/channels/rv/").json()["senders"] == []
    # a repeat of a send that had to wait keeps the first status code, reports what happened since
    again = send(api, "rv", "hello", "w1")
    assert again.status_code == 202 and again.json()["status"] == "received" and again.json()["repeated"]
    run.run()
    assert api.get(f"/api/processes/{pid}/").json()["state"]["counter"] == 1


def test_send_no_receiver_when_not_waiting(api, unchanged):
    api.post("/api/channels/", {"name": "nobody"}, format="json")
    before = counts()
    r = send(api, "nobody", 1, "nr-1", wait=False)
    assert r.status_code == 409
    assert r.json() == {"code": "no_receiver", "detail": "no receiver is waiting on channel 'nobody'"}
    after = counts()
    # nothing was delivered or held; only the refusal is remembered under its key (and logged)
    assert after["PendingCase"] == before["PendingCase"] and after["BufferedValue"] == before["BufferedValue"]
    assert ExternalSend.objects.get(pk="nr-1").status == "no_receiver"


def test_close_wakes_receivers_and_blocks_sends(api, run):
    body = {"definition": "reminder", "input": {"answers": "ans2"}}
    pid = api.post("/api/processes/", body, format="json").json()["id"]
    run.run()
    r = api.post("/api/channels/ans2/close/")
    assert r.status_code == 200
    assert r.json()["closed"] is True and r.json()["changed"] is True and r.json()["closed_at"]
    assert r.json()["receivers"] == []
    run.run()
    assert api.get(f"/api/processes/{pid}/").json()["output"]["answer"] is None
    again = api.post("/api/channels/ans2/close/")
    assert again.status_code == 200 and again.json()["changed"] is False
    before = counts()
    refused = send(api, "ans2", 1, "late")
    assert refused.status_code == 409
    assert refused.json() == {"code": "channel_closed", "detail": "channel 'ans2' is closed"}
    assert counts() == before and not ExternalSend.objects.filter(pk="late").exists()


def test_close_fires_waiting_external_send(api):
    api.post("/api/channels/", {"name": "cw"}, format="json")
    assert send(api, "cw", 1, "cw-1").status_code == 202
    api.post("/api/channels/cw/close/")
    assert api.get("/api/sends/cw-1/").json()["status"] == "closed"


@pytest.mark.parametrize("method,path", [
    ("get", "/api/channels/missing/"),
    ("post", "/api/channels/missing/close/"),
    ("get", "/api/sends/missing/"),
])
def test_unknown_channel_or_send_404(api, unchanged, method, path):
    with unchanged():
        r = getattr(api, method)(path)
    assert r.status_code == 404 and r.json()["code"] == "not_found" and "missing" in r.json()["detail"]


def test_send_to_unknown_channel_404_creates_nothing(api, unchanged):
    with unchanged():
        r = send(api, "missing", 1, "k-missing")
    assert r.status_code == 404 and r.json()["detail"] == "unknown channel 'missing'"


def test_a_held_send_moved_into_the_buffer_names_its_real_receiver(api, run):
    """Capacity 2: 1 and 2 buffered, 3 held. A receiver takes 1 and 3 moves into the buffer: the
    record of 3 says buffered (nobody has it yet), then names the receiver that really got it."""
    assert api.post("/api/channels/", {"name": "held", "capacity": 2}, format="json").status_code == 201
    assert [send(api, "held", v, f"held-{v}").status_code for v in (1, 2, 3)] == [200, 200, 202]
    first = run.start("api-test-taker", {"channel": "held"}, id="taker-1")
    assert run.output(first) == 1
    record = api.get("/api/sends/held-3/").json()
    assert (record["status"], record["delivered_to"]) == ("buffered", ""), record
    assert api.get("/api/sends/held-1/").json()["delivered_to"] == "taker-1/Main"
    run.start("api-test-taker", {"channel": "held"}, id="taker-2")
    run.start("api-test-taker", {"channel": "held"}, id="taker-3")
    assert run.output("taker-3") == 3
    record = api.get("/api/sends/held-3/").json()
    assert (record["status"], record["delivered_to"]) == ("received", "taker-3/Main"), record
