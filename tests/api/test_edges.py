"""Issue 12, loose edges: names that shadow routes, unencoded Location headers, lenient numbers,
booleans and query parameters, `null` bodies, unknown fields. Every malformed input answers 4xx
with the JSON error body and changes nothing."""
from urllib.parse import unquote

import pytest

from slct_workflows.models import Channel, ExternalSend, ProcessInstance, SendPolicy
from slct_workflows.values import NAME_RE, is_key, is_name

from .test_bad_input import assert_error, raw

# -- names: one rule, one path segment ------------------------------------------------------------


@pytest.mark.parametrize("name", ["a/send", "a/history", "x/y", "a#b", "a?b", "a%2Fb", "a b", "abc\n", ".", "-a",
                                  "é", "x" * 201, ""])
def test_names_outside_the_rule_are_refused_everywhere(api, unchanged, name):
    assert not is_name(name)
    with unchanged():
        r = api.post("/api/processes/", {"definition": "counter", "id": name}, format="json")
        assert_error(r, 400, "invalid")
        assert "id" in r.json()["fields"]
        r = api.post("/api/channels/", {"name": name}, format="json")
        assert_error(r, 400, "invalid")
        assert "name" in r.json()["fields"]


@pytest.mark.parametrize("name", ["a", "A9", "chan-0123456789abcdef0123456789abcdef", "result-0123abcd",
                                  "slack-0123456789abcdef", "0123456789abcdef0123456789abcdef", "a.b:c@d+e_f-g",
                                  "x" * 200])
def test_runtime_and_plain_names_follow_the_rule(name):
    assert is_name(name) and NAME_RE.pattern.startswith("\\A")


def test_channel_names_like_sub_resources_do_not_shadow_routes(api):
    for name in ["send", "close", "history"]:
        r = api.post("/api/channels/", {"name": name, "capacity": 1}, format="json")
        assert r.status_code == 201 and r["Location"] == f"/api/channels/{name}/"
        assert api.get(r["Location"]).json()["name"] == name
    r = api.post("/api/channels/send/send/", {"value": 1}, format="json", HTTP_IDEMPOTENCY_KEY="s1")
    assert r.status_code == 200 and r.json()["channel"] == "send"
    assert api.post("/api/channels/close/close/").json()["closed"] is True
    assert Channel.objects.get(pk="send").closed is False


def test_a_newline_does_not_end_a_name(api, unchanged):
    # `$` in the old rule let "abc\n" through
    with unchanged():
        r = api.post("/api/channels/", {"name": "abc\n"}, format="json")
    assert_error(r, 400, "invalid", "name: must be")


# -- Location headers ---------------------------------------------------------------------------

def test_send_location_is_percent_encoded(api):
    api.post("/api/channels/", {"name": "loc"}, format="json")
    key = "order 7/#1?x=%41"
    assert is_key(key)
    r = api.post("/api/channels/loc/send/", {"value": 1}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert r.status_code == 202, r.json()
    assert r["Location"] == "/api/sends/order%207/%231%3Fx=%2541/"
    assert unquote(r["Location"]) == f"/api/sends/{key}/"
    followed = api.get(r["Location"])
    assert followed.status_code == 200 and followed.json()["key"] == key
    # the repeat answers the same Location
    assert api.post("/api/channels/loc/send/", {"value": 1}, format="json", HTTP_IDEMPOTENCY_KEY=key)["Location"] \
        == r["Location"]


def test_start_and_create_locations_resolve(api):
    r = api.post("/api/processes/", {"definition": "counter", "id": "a:b@c+d.e"}, format="json")
    assert r.status_code == 201 and api.get(r["Location"]).json()["id"] == "a:b@c+d.e"
    again = api.post("/api/processes/", {"definition": "counter", "id": "a:b@c+d.e"}, format="json")
    assert again.status_code == 200 and again["Location"] == r["Location"]
    r = api.post("/api/channels/", {}, format="json")
    assert r.status_code == 201 and api.get(r["Location"]).json()["name"] == r.json()["name"]


# -- strict numbers and booleans ----------------------------------------------------------------

@pytest.mark.parametrize("capacity", ["5", True, False, 5.0, 0.0, "0", None, [5], {"n": 5}])
def test_capacity_is_a_json_integer(api, unchanged, capacity):
    with unchanged():
        r = api.post("/api/channels/", {"name": "strict", "capacity": capacity}, format="json")
    assert_error(r, 400, "invalid")
    assert "capacity" in r.json()["fields"]


def test_capacity_integer_is_fine(api):
    assert api.post("/api/channels/", {"name": "five", "capacity": 5}, format="json").json()["capacity"] == 5


@pytest.mark.parametrize("wait", [0, 1, "true", "yes", None])
def test_wait_is_a_json_boolean(api, unchanged, wait):
    api.post("/api/channels/", {"name": "w"}, format="json")
    with unchanged():
        r = api.post("/api/channels/w/send/", {"value": 1, "wait": wait}, format="json", HTTP_IDEMPOTENCY_KEY="w1")
    assert_error(r, 400, "invalid")
    assert "wait" in r.json()["fields"]


# -- query parameters ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/processes/", "/api/channels/", "/api/processes/qp/history/"])
@pytest.mark.parametrize("query,param", [
    ("page_size=null", "page_size"), ("page_size=", "page_size"), ("page_size=0", "page_size"),
    ("page_size=501", "page_size"), ("page_size=5.0", "page_size"), ("page_size=1&page_size=2", "page_size"),
    ("page=0", "page"), ("page=abc", "page"), ("page=last", "page"), ("page=", "page"), ("page=1" + "0" * 30, "page"),
])
def test_bad_paging_is_400(api, path, query, param):
    api.post("/api/processes/", {"definition": "counter", "id": "qp"}, format="json")
    r = api.get(f"{path}?{query}")
    assert_error(r, 400, "invalid")
    assert list(r.json()["fields"]) == [param]


def test_page_past_the_end_is_404(api):
    assert api.get("/api/channels/?page=1").status_code == 200
    assert_error(api.get("/api/channels/?page=2"), 404, "not_found", "Invalid page")


@pytest.mark.parametrize("path", ["/api/processes/", "/api/channels/"])
@pytest.mark.parametrize("query,param", [
    ("search=", "search"), ("search=a%20b", "search"), ("search=a/b", "search"), ("search=a&search=b", "search"),
])
def test_bad_search_is_400(api, path, query, param):
    r = api.get(f"{path}?{query}")
    assert_error(r, 400, "invalid")
    assert list(r.json()["fields"]) == [param]


@pytest.mark.parametrize("query,param", [
    ("closed=", "closed"), ("closed=1", "closed"), ("closed=True", "closed"), ("closed=null", "closed"),
])
def test_closed_filter_is_true_or_false(api, query, param):
    assert_error(api.get(f"/api/channels/?{query}"), 400, "invalid")


@pytest.mark.parametrize("query,param", [
    ("status=", "status"), ("definition=", "definition"), ("definition=a%20b", "definition"),
    ("created_after=", "created_after"), ("created_after=2030-01-01", "created_after"),
    ("created_after=2030-01-01T10:00:00", "created_after"),  # no offset: which time zone?
    ("created_after=2030-01-01%2010:00:00Z", "created_after"),
    ("created_after=0001-01-01T00:00:00%2B01:00", "created_after"),  # before the first UTC datetime
    ("created_before=9999-12-31T23:59:59-01:00", "created_before"),  # after the last one
])
def test_bad_process_filters_are_400(api, query, param):
    r = api.get(f"/api/processes/?{query}")
    assert_error(r, 400, "invalid")
    assert list(r.json()["fields"]) == [param]


def test_rfc3339_filters(api):
    assert api.post("/api/processes/", {"definition": "counter", "id": "when"}, format="json").status_code == 201
    for value in ["2000-01-01T00:00:00Z", "2000-01-01t00:00:00z", "2000-01-01T01:00:00.123456789%2B01:00"]:
        r = api.get(f"/api/processes/?created_after={value}")
        assert r.status_code == 200 and r.json()["count"] == 1, (value, r.json())


# -- bodies: null, unknown fields, no Content-Type ------------------------------------------------

BODY_POSTS = [
    ("/api/processes/", {"definition": "counter"}),
    ("/api/channels/", {"name": "made"}),
    ("/api/channels/inbox/send/", {"value": 1}),
    ("/api/processes/p1/cancel/", {"reason": "x"}),
    ("/api/processes/p1/retry/", {}),
    ("/api/channels/inbox/close/", {}),
]


@pytest.fixture
def targets(api):
    assert api.post("/api/channels/", {"name": "inbox", "capacity": 2}, format="json").status_code == 201
    assert api.post("/api/processes/", {"definition": "counter", "id": "p1"}, format="json").status_code == 201


@pytest.mark.parametrize("path,body", BODY_POSTS)
def test_null_body_is_refused(api, targets, unchanged, path, body):
    with unchanged():
        r = raw(api, path, "null", HTTP_IDEMPOTENCY_KEY="n1")
    assert_error(r, 400, "invalid", "Expected a dictionary, but got null")
    assert Channel.objects.get(pk="inbox").closed is False
    assert ProcessInstance.objects.get(pk="p1").status == "running"


@pytest.mark.parametrize("path,body", BODY_POSTS)
def test_unknown_fields_are_refused(api, targets, unchanged, path, body):
    with unchanged():
        r = api.post(path, {**body, "extra": 1, "Value": 2}, format="json", HTTP_IDEMPOTENCY_KEY="x1")
    assert_error(r, 400, "invalid")
    assert r.json()["fields"]["extra"] == ["Unknown field."] and r.json()["fields"]["Value"] == ["Unknown field."]
    assert Channel.objects.get(pk="inbox").closed is False
    assert ProcessInstance.objects.get(pk="p1").status == "running"


@pytest.mark.parametrize("path,body", BODY_POSTS)
def test_body_without_content_type_is_415(api, targets, unchanged, path, body):
    import json

    with unchanged():
        r = api.generic("POST", path, json.dumps(body), content_type="", HTTP_IDEMPOTENCY_KEY="c1")
    assert_error(r, 415, "unsupported_media_type", "no Content-Type")


def test_empty_bodies_and_empty_objects_are_fine(api, targets):
    assert api.post("/api/processes/p1/cancel/").status_code == 200
    assert api.post("/api/channels/inbox/close/", {}, format="json").json()["closed"] is True


def test_unknown_fields_and_bad_fields_are_reported_together(api, unchanged):
    with unchanged():
        r = api.post("/api/channels/", {"capacity": "5", "colour": "red"}, format="json")
    assert_error(r, 400, "invalid")
    assert set(r.json()["fields"]) == {"capacity", "colour"}


# -- Idempotency-Key -----------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["", " ", " lead", "trail ", "tab\there", "é", "k" * 256, "new\nline", "\x7f"])
def test_bad_idempotency_keys_are_400(api, unchanged, key):
    api.post("/api/channels/", {"name": "keys", "capacity": 5}, format="json")
    with unchanged():
        r = api.post("/api/channels/keys/send/", {"value": 1}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert_error(r, 400, "invalid", "Idempotency-Key header is required: 1-255 printable ASCII characters")


@pytest.mark.parametrize("key", ["k", "a b", "k" * 255, "~!@#$%^&*()/?", "2b7e1516-28ae-4d2a-a6f7-15882c1d0e3c"])
def test_good_idempotency_keys(api, key):
    api.post("/api/channels/", {"name": "keys", "capacity": 5}, format="json")
    r = api.post("/api/channels/keys/send/", {"value": 1}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert r.status_code == 200 and ExternalSend.objects.filter(pk=key).exists()


# -- 403 forbidden from the channel access model -------------------------------------------------

def test_private_channel_is_403_forbidden_and_json(api, unchanged):
    Channel.objects.create(name="private-1", capacity=1, owner="someone", policy=SendPolicy.PRIVATE)
    with unchanged():
        r = api.post("/api/channels/private-1/send/", {"value": 1}, format="json", HTTP_IDEMPOTENCY_KEY="f1")
        assert_error(r, 403, "forbidden", "private")
        r = api.post("/api/channels/private-1/close/")
        assert_error(r, 403, "forbidden", "private")
    assert Channel.objects.get(pk="private-1").closed is False
