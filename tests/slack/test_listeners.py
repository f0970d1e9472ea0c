"""slack_integration.listeners: the two reads the hook listeners make on the engine's hot path are
compiled once (slct_workflows.runtime.FixedValues); each answers exactly what its queryset
answers, and the listeners queue a sync job for exactly the processes with an open question."""
from __future__ import annotations

import pytest

from slack_integration import listeners, services
from slack_integration.models import Kind, SlackMessage, Status
from slct_workflows import hooks
from slct_workflows.models import ProcessInstance

pytestmark = pytest.mark.django_db


def _messages() -> None:
    for pid in ("ls-a", "ls-b", "ls-c", "ls-d", "ls-e"):
        ProcessInstance.objects.create(id=pid, definition="x")
    rows = [
        ("ls-a", "Main", Kind.APPROVE, Status.OPEN),  # an open question
        ("ls-a", "Other", Kind.ASK, Status.OPEN),  # another goroutine's open question
        ("ls-b", "Main", Kind.APPROVE, Status.ANSWERED),  # answered
        ("ls-c", "Main", Kind.POST, Status.OPEN),  # a plain post is never a question (even "open")
        ("ls-d", "Main", Kind.CHOOSE, Status.OPEN),
        ("ls-d", "Main", Kind.ASK, Status.TIMED_OUT),
    ]
    for pid, goroutine, kind, status in rows:
        SlackMessage.objects.create(process_id=pid, goroutine=goroutine, kind=kind, status=status, text="q")


def _open(**filters) -> set:
    qs = SlackMessage.objects.filter(status=Status.OPEN, **filters).exclude(kind=Kind.POST)
    return set(qs.values_list("process_id", flat=True))


@pytest.mark.parametrize("ids", [["ls-a"], ["ls-b", "ls-c"], ["ls-a", "ls-b", "ls-c", "ls-d", "ls-e"], ["nope"]])
def test_open_in_processes_answers_what_the_queryset_answers(ids):
    _messages()
    got = {pid for (pid,) in listeners._OPEN_IN_PROCESSES(ids, Status.OPEN.value, Kind.POST.value)}
    assert got == _open(process_id__in=ids)


@pytest.mark.parametrize("pairs", [
    {("ls-a", "Main")}, {("ls-a", "Nobody")}, {("ls-a", "Other"), ("ls-d", "Main")},
    {("ls-b", "Main"), ("ls-c", "Main"), ("ls-e", "Main")}, {("ls-a", "Main"), ("ls-d", "Other")},
])
def test_asking_answers_what_the_queryset_answers_pair_by_pair(pairs):
    _messages()
    expected = {p for p, g in pairs if _open(process_id=p, goroutine=g)}
    assert listeners._asking(pairs) == expected


def test_the_listeners_queue_a_sync_for_exactly_the_processes_with_an_open_question(monkeypatch):
    _messages()
    queued: list[str] = []
    monkeypatch.setattr(services, "queue_job", lambda func, *args, process_id=None: queued.append(process_id))
    listeners.process_ended([hooks.ProcessEnded(process_id=pid, definition="x", status="done")
                             for pid in ("ls-a", "ls-b", "ls-c", "ls-d", "ls-e", "ls-a")])
    assert queued == ["ls-a", "ls-d"]
    queued.clear()
    listeners.select_fired([
        hooks.SelectFired(process_id=pid, goroutine=g, goroutine_id=i, kind="timer", channel="", method="m",
                          by=hooks.BY_TIMER)
        for i, (pid, g) in enumerate([("ls-a", "Other"), ("ls-b", "Main"), ("ls-d", "Other"), ("ls-d", "Main")])
    ])
    assert queued == ["ls-a", "ls-d"]
