"""Answer questions in tests, through the same delivery path as a verified click.

    from slack_integration.testing import answer

    def test_approved(workflow_runner):
        pid = workflow_runner.start("expense", {"amount": 120})
        answer(pid, approved=True, slack_user="U123ABC")       # a click on Approve by U123ABC
        workflow_runner.run()
        workflow_runner.assert_finished(pid, {"approved": True, "by": "U123ABC", "timed_out": False})

Sending a value into a question's reply channel (`run.send(reply_channel, {...})`) does not
answer it: the value has no answer provenance, so the callback's step fails with
`slack.UnverifiedAnswer` (that is the protection against forged answers).
"""
from __future__ import annotations

from typing import Any

from slct_workflows import clock

from . import identity, services
from .models import Kind, SlackMessage, Status


def open_question(process_id: str) -> SlackMessage:
    """The process's one open question (AssertionError if none or several)."""
    open_ = list(SlackMessage.objects.filter(process_id=process_id, status=Status.OPEN).exclude(kind=Kind.POST))
    if len(open_) != 1:
        raise AssertionError(f"process {process_id} has {len(open_)} open Slack questions, expected one")
    return open_[0]


def answer(question: SlackMessage | str, *, approved: bool | None = None, text: str | None = None,
           choice: str | None = None, slack_user: str = "U0TESTER", user_name: str = "tester",
           admin_user: Any = None) -> str:
    """Answer `question` (a SlackMessage, or a process id with one open question) as the Slack user
    `slack_user` would by clicking (or, with `admin_user`, as that Django user on the Pending
    questions page). Returns the delivery outcome (services.DELIVERED, ...); run the workflow
    runner afterwards to let the process take it."""
    m = question if isinstance(question, SlackMessage) else open_question(question)
    if admin_user is not None:
        return services.answer_from_admin(m, admin_user, approved=approved, text=text, choice=choice)
    if m.kind == Kind.APPROVE and approved is None:
        raise ValueError("answer(approved=True/False) for an approve() question")
    value = services.answer_value(m, approved=approved, text=text, choice=choice, answered_at=clock.now())
    sender = identity.slack_answer(slack_user, user=identity.django_user(slack_user), name=user_name)
    if not services.is_allowed(m, slack_user):
        return services.REFUSED
    return services.deliver_answer(m, value, f"slack-test:{m.pk}:{slack_user}", sender)
