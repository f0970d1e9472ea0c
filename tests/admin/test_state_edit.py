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


# -- what an edit may contain: the definition's field types, REST's limits, partial edits --------

import uuid  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from decimal import Decimal  # noqa: E402
from typing import Any, Literal, Optional  # noqa: E402

import pytest  # noqa: E402

from slct_workflows import Process, services  # noqa: E402
from slct_workflows.errors import InvalidInput  # noqa: E402
from slct_workflows.pytest_plugin import workflow_registry  # noqa: E402,F401  (fixture)


class Money:
    """Not a dataclass, not a JSON type: the definition converts it itself (any JSON accepted)."""


@dataclass
class Address:
    city: str
    zip: str = ""


@dataclass
class TypedState:
    count: int = 0
    ratio: float = 0.0
    name: str = ""
    flag: bool = False
    maybe: int | None = None
    older: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    scores: dict[str, int] = field(default_factory=dict)
    address: Address | None = None
    addresses: list[Address] = field(default_factory=list)
    due: datetime | None = None
    day: date | None = None
    amount: Decimal = Decimal("0")
    ref: uuid.UUID | None = None
    mode: Literal["fast", "slow"] = "fast"
    pair: tuple[int, str] = (0, "")
    extra: Any = None
    money: Money | None = None
    anything: list = field(default_factory=list)

    def Main_Start(self, p: Process, input=None):
        p.select().recv("typed-state-in").to(self.Main_Got)

    def Main_Got(self, p: Process, value=None):
        p.finish(value)


from datetime import date, datetime, timezone  # noqa: E402  (after the class: its annotations are strings)


@pytest.fixture
def typed(run, workflow_registry):
    workflow_registry.add("typed-state", TypedState)
    pid = run.start("typed-state")
    return pid


def _edit(client, pid, state, reason="edit"):
    proc = ProcessInstance.objects.get(pk=pid)
    text = state if isinstance(state, str) else json.dumps(state)
    return client.post(f"{P}/{pid}/state/", {"state": text, "reason": reason, "confirm": "on",
                                             "step_count": proc.step_count})


def _unchanged(pid, before):
    proc = ProcessInstance.objects.get(pk=pid)
    assert (proc.state, proc.step_count) == before
    assert not Event.objects.filter(process_id=pid, kind="state").exists()


def _snapshot(pid):
    proc = ProcessInstance.objects.get(pk=pid)
    return proc.state, proc.step_count


@pytest.mark.parametrize("depth", [100, 990, 5000, 200_000])
def test_deeply_nested_edits_are_refused_not_a_500(typed, admin_client_, depth):
    before = _snapshot(typed)
    text = '{"extra": ' + "[" * depth + "]" * depth + "}"
    r = _edit(admin_client_, typed, text)
    assert r.status_code == 400
    assert "nested more than 64 levels deep" in html.unescape(r.content.decode())
    _unchanged(typed, before)


def test_the_service_refuses_deep_nesting_built_in_python(typed):
    before = _snapshot(typed)
    deep: Any = []
    for _ in range(20_000):
        deep = [deep]
    with pytest.raises(InvalidInput, match="nested more than 64 levels"):
        services.set_state(typed, {"extra": deep})
    shallow: Any = "x"
    for _ in range(62):  # the state object and the field are two levels: 64 in all is allowed
        shallow = [shallow]
    services.set_state(typed, {"extra": shallow})
    assert ProcessInstance.objects.get(pk=typed).state["extra"] == shallow
    _ = before


WRONG = [
    ({"count": "12"}, "count: expected an integer, got a string"),
    ({"count": 1.5}, "count: expected an integer, got a number"),
    ({"count": True}, "count: expected an integer, got a boolean"),
    ({"ratio": "1.0"}, "ratio: expected a number, got a string"),
    ({"ratio": False}, "ratio: expected a number, got a boolean"),
    ({"name": 7}, "name: expected a string, got an integer"),
    ({"flag": 1}, "flag: expected a boolean, got an integer"),
    ({"maybe": "3"}, "maybe: expected an integer or null, got a string"),
    ({"older": 3}, "older: expected a string or null, got an integer"),
    ({"tags": "a,b"}, "tags: expected an array, got a string"),
    ({"tags": ["a", 2]}, "tags[1]: expected a string, got an integer"),
    ({"scores": [1]}, "scores: expected an object of an integer, got an array"),
    ({"scores": {"a": 1, "b": "2"}}, 'scores["b"]: expected an integer, got a string'),
    ({"address": {"zip": "0150"}}, "address: Address's fields ['city'] are missing"),
    ({"address": {"city": "Oslo", "street": "x"}}, "address: Address has no fields ['street']"),
    ({"address": {"city": 5}}, "address.city: expected a string, got an integer"),
    ({"address": "Oslo"}, "address: expected an object of Address's fields or null, got a string"),
    ({"addresses": [{"city": "Oslo"}, {"city": None}]}, "addresses[1].city: expected a string, got null"),
    ({"due": "yesterday"}, "due: expected a date-time string (ISO 8601) or null, got a string"),
    ({"due": 1714557600}, "due: expected a date-time string (ISO 8601) or null, got an integer"),
    ({"day": "2024-13-45"}, "day: expected a date string (YYYY-MM-DD) or null, got a string"),
    ({"amount": 12.5}, "amount: expected a decimal number as a string, got a number"),
    ({"amount": "twelve"}, "amount: expected a decimal number as a string, got a string"),
    ({"ref": "not-a-uuid"}, "ref: expected a UUID string or null, got a string"),
    ({"mode": "medium"}, 'mode: expected one of "fast", "slow", got "medium"'),
    ({"pair": [1]}, "pair: expected an array of 2 items, got 1"),
    ({"pair": ["1", "a"]}, "pair[0]: expected an integer, got a string"),
    ({"nope": 1}, "TypedState has no fields ['nope']"),
]


@pytest.mark.parametrize("edit,message", WRONG, ids=[m.split(":")[0] for _, m in WRONG])
def test_a_value_of_the_wrong_type_is_refused_with_where_and_why(typed, admin_client_, edit, message):
    before = _snapshot(typed)
    r = _edit(admin_client_, typed, edit)
    assert r.status_code == 400
    page = html.unescape(r.content.decode())
    assert "Not saved: the state does not fit TypedState" in page and message in page, page[:200]
    _unchanged(typed, before)
    with pytest.raises(InvalidInput, match="does not fit TypedState"):  # the same rule for every caller
        services.set_state(typed, edit)
    _unchanged(typed, before)


def test_every_problem_is_listed(typed):
    with pytest.raises(InvalidInput) as refused:
        services.set_state(typed, {"count": "1", "flag": "yes", "tags": [1]})
    text = str(refused.value)
    assert "count: expected an integer" in text and "flag: expected a boolean" in text and "tags[0]" in text


RIGHT = {
    "count": 12, "ratio": 2, "name": "n", "flag": True, "maybe": None, "older": "o",
    "tags": ["a", "b"], "scores": {"a": 1}, "address": {"city": "Oslo"},
    "addresses": [{"city": "Bergen", "zip": "5003"}],
    "due": "2024-05-01T10:00:00.123Z", "day": "2024-05-01", "amount": "12.50",
    "ref": "6f1c1f5e-8a4b-4c5e-9d3a-0c1b2a3d4e5f", "mode": "slow", "pair": [1, "a"],
    "extra": {"any": [1, "x", None, {"deep": True}]}, "money": {"cents": 150, "currency": "NOK"},
    "anything": [1, "two", [3]],
}


def test_values_of_the_right_types_are_stored_as_given(typed, admin_client_):
    r = _edit(admin_client_, typed, RIGHT)
    assert r.status_code == 302, html.unescape(r.content.decode())[:2000]
    assert ProcessInstance.objects.get(pk=typed).state == RIGHT
    # and what the encoder writes for Python values is accepted from a service caller
    services.set_state(typed, {
        "due": datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=timezone.utc), "day": date(2024, 5, 1),
        "amount": Decimal("0.10"), "ref": uuid.UUID(RIGHT["ref"]),
    })
    state = ProcessInstance.objects.get(pk=typed).state
    assert (state["due"], state["day"], state["amount"]) == ("2024-05-01T10:00:00.123Z", "2024-05-01", "0.10")


def test_a_partial_edit_keeps_the_fields_left_out(typed, admin_client_):
    services.set_state(typed, {"name": "kept", "tags": ["t"], "count": 1})
    seen = ProcessInstance.objects.get(pk=typed).state
    r = _edit(admin_client_, typed, {"count": 5}, reason="only the count")
    assert r.status_code == 302
    after = ProcessInstance.objects.get(pk=typed).state
    assert after == {**seen, "count": 5}
    edit = Event.objects.filter(process_id=typed, kind="state").order_by("-seq").first()
    assert edit.detail["fields"] == ["count"] and edit.detail["before"] == seen
    assert edit.detail["reason"] == "only the count"
    # an empty edit changes nothing but is still recorded
    services.set_state(typed, {}, reason="look")
    assert ProcessInstance.objects.get(pk=typed).state == after


def test_the_process_runs_on_with_the_edited_state(typed, run):
    services.set_state(typed, {"count": 41})
    run.send("typed-state-in", "go")
    proc = ProcessInstance.objects.get(pk=typed)
    assert proc.status == "done" and proc.state["count"] == 41


def test_oversized_edits_are_refused(typed, admin_client_, settings):
    settings.SLCT_MAX_VALUE_BYTES = 2048
    before = _snapshot(typed)
    r = _edit(admin_client_, typed, {"name": "x" * 3000})
    assert r.status_code == 400
    page = html.unescape(r.content.decode())
    assert "the limit is 2048" in page
    _unchanged(typed, before)
    # each half fits; together they do not (the limit is on the whole state)
    services.set_state(typed, {"name": "x" * 1000})
    with pytest.raises(InvalidInput, match="the limit is 2048"):
        services.set_state(typed, {"tags": ["y" * 1200]})
    assert ProcessInstance.objects.get(pk=typed).state["tags"] == []


@pytest.mark.parametrize("text,message", [
    ('{"extra": NaN}', "NaN is not valid JSON"),
    ('{"ratio": 1e999}', "out of range"),
    ('{"name": "a\\u0000b"}', "NUL character"),
    ('{"name": "\\ud800"}', "unpaired surrogate"),
    ('[1, 2]', "The state is a JSON object"),
])
def test_unstorable_json_is_refused(typed, admin_client_, text, message):
    before = _snapshot(typed)
    r = _edit(admin_client_, typed, text)
    assert r.status_code == 400 and message in html.unescape(r.content.decode())
    _unchanged(typed, before)


def test_an_unresolvable_annotation_accepts_any_json(run, workflow_registry):
    from slct_workflows import state_schema

    @dataclass
    class Local:
        thing: "NoSuchType" = None  # noqa: F821

        def Main_Start(self, p: Process, input=None):
            p.select().recv("typed-local-in").to(self.Main_Start)

    state_schema.check_fields(Local, {"thing": {"a": [1]}})
    with pytest.raises(state_schema.StateError):
        state_schema.check_fields(Local, {"other": 1})


def test_the_depth_limit_is_rests():
    from slct_workflows import state_schema
    from slct_workflows.api.parsers import MAX_DEPTH

    with pytest.raises(ValueError, match=f"nested more than {MAX_DEPTH} levels"):
        state_schema.loads("[" * 100_000)
