"""Every bad input gets a 4xx with a clear JSON message and changes nothing in the database."""
import io
import json

import pytest
from rest_framework.exceptions import ParseError

from slct_workflows.api.exceptions import PayloadTooLarge
from slct_workflows.api.parsers import StrictJSONParser
from slct_workflows.models import Channel, ProcessInstance


@pytest.fixture
def chan(api):
    assert api.post("/api/channels/", {"name": "inbox", "capacity": 3}, format="json").status_code == 201
    return "inbox"


def raw(api, path, body, content_type="application/json", **extra):
    return api.generic("POST", path, body, content_type=content_type, **extra)


def assert_error(r, status, code, *words):
    assert r.status_code == status, (r.status_code, r.content)
    body = r.json()
    assert body["code"] == code, body
    for w in words:
        assert w in body["detail"], body


def test_unknown_definition(api, unchanged):
    with unchanged():
        r = api.post("/api/processes/", {"definition": "nope", "input": 1}, format="json")
    assert_error(r, 400, "invalid", "unknown process definition 'nope'", "known definitions: ", "counter")
    assert list(r.json()["fields"]) == ["definition"]


@pytest.mark.parametrize("body,field", [
    ({}, "definition"),
    ({"definition": 5}, "definition"),
    ({"definition": "counter", "id": "has space"}, "id"),
    ({"definition": "counter", "id": "team/a/1"}, "id"),
    ({"definition": "counter", "id": ""}, "id"),
    ({"definition": "counter", "id": "x" * 201}, "id"),
    ({"definition": "counter", "id": ["a"]}, "id"),
    ({"definition": "counter", "id": 12}, "id"),
])
def test_bad_start_fields(api, unchanged, body, field):
    with unchanged():
        r = api.post("/api/processes/", body, format="json")
    assert r.status_code == 400, r.json()
    assert field in r.json()["fields"]


@pytest.mark.parametrize("path", ["/api/processes/", "/api/channels/", "/api/channels/inbox/send/"])
@pytest.mark.parametrize("body,words", [
    ('{"definition": "counter", ', "JSON parse error"),
    ("not json at all", "JSON parse error"),
    ('{"definition": "counter", "input": NaN, "value": NaN}', "NaN is not valid JSON"),
    ('{"definition": "counter", "input": Infinity, "value": -Infinity}', "Infinity is not valid JSON"),
    ('{"definition": "counter", "input": "a\\u0000b", "value": "a\\u0000b"}', "NUL character"),
    ('{"definition": "counter", "input": "\\ud800", "value": "\\udfff"}', "unpaired surrogate"),
    ('{"definition": "counter", "input": ' + "[" * 5000 + "]" * 5000 + "}", "nested"),
    ('{"definition": "counter", "input": ' + "[" * 70 + "]" * 70 + "}", "nested more than 64"),
    ('{"definition": "counter", "input": 1' + "0" * 5000 + "}", "JSON parse error"),
])
def test_malformed_or_unstorable_json(api, chan, unchanged, path, body, words):
    with unchanged():
        r = raw(api, path, body, HTTP_IDEMPOTENCY_KEY="k1")
    assert_error(r, 400, "parse_error", words)


def test_non_utf8_body(api, unchanged):
    with unchanged():
        r = raw(api, "/api/processes/", b'{"definition": "counter", "input": "\xff\xfe"}')
    assert_error(r, 400, "parse_error", "not valid utf-8")


@pytest.mark.parametrize("path", ["/api/processes/", "/api/channels/inbox/send/"])
def test_float_overflow_is_not_json_serialisable(api, chan, unchanged, path):
    # 1e400 parses to inf in Python; it cannot be stored as JSON
    with unchanged():
        r = raw(api, path, '{"definition": "counter", "input": 1e400, "value": 1e400}', HTTP_IDEMPOTENCY_KEY="k")
    assert_error(r, 400, "parse_error", "number out of range")


def test_form_data_is_415(api, unchanged):
    with unchanged():
        r = api.post("/api/processes/", {"definition": "counter"})  # multipart
    assert_error(r, 415, "unsupported_media_type", "multipart/form-data")


def test_body_not_an_object(api, unchanged):
    with unchanged():
        r = api.post("/api/processes/", ["counter"], format="json")
    assert_error(r, 400, "invalid", "Expected a dictionary")


@pytest.mark.parametrize("body,words", [
    ({"capacity": -1}, "greater than or equal to 0"),
    ({"capacity": 1_000_001}, "less than or equal to 1000000"),
    ({"capacity": "many"}, "valid integer"),
    ({"capacity": True}, "valid integer"),
    ({"capacity": 1.5}, "valid integer"),
    ({"name": "bad name", "capacity": 1}, "name: must be 1-200 characters"),
    ({"name": "", "capacity": 1}, "name"),
    ({"name": 12, "capacity": 1}, "Not a valid string"),
])
def test_bad_channel_create(api, unchanged, body, words):
    with unchanged():
        r = api.post("/api/channels/", body, format="json")
    assert r.status_code == 400, r.json()
    assert words in r.json()["detail"]
    assert not Channel.objects.exists()


def test_send_needs_idempotency_key(api, chan, unchanged):
    with unchanged():
        r = api.post("/api/channels/inbox/send/", {"value": 1}, format="json")
        assert_error(r, 400, "invalid", "Idempotency-Key header is required")
        r = api.post("/api/channels/inbox/send/", {"value": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 256)
        assert_error(r, 400, "invalid", "Idempotency-Key")
        r = api.post("/api/channels/inbox/send/", {"value": 1}, format="json", HTTP_IDEMPOTENCY_KEY="a\tb")
        assert_error(r, 400, "invalid", "Idempotency-Key")


@pytest.mark.parametrize("body,field", [
    ({}, "value"),
    ({"value": 1, "wait": "perhaps"}, "wait"),
    ({"value": 1, "wait": None}, "wait"),
])
def test_bad_send_body(api, chan, unchanged, body, field):
    with unchanged():
        r = api.post("/api/channels/inbox/send/", body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert r.status_code == 400 and field in r.json()["fields"]


def test_send_null_value_is_fine(api, chan):
    r = api.post("/api/channels/inbox/send/", {"value": None}, format="json", HTTP_IDEMPOTENCY_KEY="null")
    assert r.status_code == 200 and r.json()["status"] == "buffered" and r.json()["value"] is None


def test_send_to_closed_channel(api, chan, unchanged):
    api.post("/api/channels/inbox/close/")
    with unchanged():
        r = api.post("/api/channels/inbox/send/", {"value": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert_error(r, 409, "channel_closed", "channel 'inbox' is closed")


@pytest.mark.parametrize("path", ["/api/processes/", "/api/channels/", "/api/channels/inbox/send/",
                                  "/api/processes/p/cancel/", "/api/channels/inbox/close/"])
def test_oversized_request_is_413(api, chan, settings, unchanged, path):
    settings.SLCT_MAX_REQUEST_BYTES = 2048
    api.post("/api/processes/", {"definition": "counter", "id": "p"}, format="json")
    body = {"definition": "counter", "input": "x" * 3000, "value": "x" * 3000, "capacity": 1, "reason": "x" * 3000}
    with unchanged():
        r = api.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="big")
    assert_error(r, 413, "payload_too_large", "the limit is 2048 bytes", "SLCT_MAX_REQUEST_BYTES")
    assert ProcessInstance.objects.get(pk="p").status == "running"
    assert Channel.objects.get(pk="inbox").closed is False
    # just under the limit passes
    ok = api.post("/api/processes/", {"definition": "counter", "input": "x" * 1500}, format="json")
    assert ok.status_code == 201


def test_value_over_engine_limit_is_400(api, chan, settings, unchanged):
    settings.SLCT_MAX_VALUE_BYTES = 1000
    with unchanged():
        r = api.post("/api/channels/inbox/send/", {"value": "x" * 2000}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert_error(r, 400, "invalid", "the limit is 1000")


def test_parser_limits_bodies_without_content_length(settings):
    settings.SLCT_MAX_REQUEST_BYTES = 1024
    parser = StrictJSONParser()
    assert parser.parse(io.BytesIO(json.dumps({"a": "x" * 900}).encode())) == {"a": "x" * 900}
    with pytest.raises(PayloadTooLarge):
        parser.parse(io.BytesIO(json.dumps({"a": "x" * 2000}).encode()))
    with pytest.raises(ParseError):
        parser.parse(io.BytesIO(b"[NaN]"))


@pytest.mark.parametrize("query,param", [
    ("status=done%00", "status"),
    ("definition=a%00b", "definition"),
    ("search=%00", "search"),
    ("page=%00", "page"),
])
def test_nul_in_query_is_400(api, query, param):
    r = api.get(f"/api/processes/?{query}")
    assert_error(r, 400, "invalid", f"query parameter '{param}' contains a NUL character")


@pytest.mark.parametrize("path", ["/api/processes/a%00b/", "/api/channels/a%00b/", "/api/sends/a%00b/",
                                  "/api/processes/" + "x" * 300 + "/", "/api/definitions/a%00/"])
def test_unstorable_ids_in_path_are_404(api, path):
    r = api.get(path)
    assert_error(r, 404, "not_found", "no API endpoint at")
    assert "\x00" not in r.json()["detail"]


def test_nul_in_path_of_actions_changes_nothing(api, unchanged):
    with unchanged():
        assert api.post("/api/processes/a%00b/cancel/").status_code == 404
        assert api.post("/api/channels/a%00b/close/").status_code == 404
        r = api.post("/api/channels/a%00b/send/", {"value": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k")
        assert r.status_code == 404


def test_send_to_channel_with_unsendable_name_is_404(api, unchanged):
    # no channel can have such a name, so no URL names it
    with unchanged():
        r = api.post("/api/channels/has space/send/", {"value": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert_error(r, 404, "not_found", "channel names are 1-200 characters")


def test_cancel_reason_must_be_text(api, unchanged):
    api.post("/api/processes/", {"definition": "counter", "id": "p"}, format="json")
    with unchanged():
        r = api.post("/api/processes/p/cancel/", {"reason": {"x": 1}}, format="json")
    assert r.status_code == 400 and "reason" in r.json()["fields"]
    assert ProcessInstance.objects.get(pk="p").status == "running"
