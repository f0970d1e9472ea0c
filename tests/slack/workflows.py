"""Definitions for the Slack tests (workers load them via SLCT_WORKFLOW_MODULES)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from slct_workflows import Process, register

from slack_integration import slack


def _result(result: slack.Result) -> dict:
    return {
        "approved": result.approved, "text": result.text, "choice": result.choice, "user": result.user,
        "user_name": result.user_name, "django_user": result.django_user, "timed_out": result.timed_out,
        "via": result.via,
        "answered_at": result.answered_at.isoformat() if result.answered_at else None,
    }


@register("slack-test-approve")
@dataclass
class ApproveTest:
    def Main_Start(self, p: Process, input):
        slack.approve(p, self.Main_Decided, input.get("text", "Approve?"), timeout=input.get("timeout"),
                      channel=input.get("channel"), approvers=input.get("approvers"))

    def Main_Decided(self, p: Process, result: slack.Result):
        p.finish(_result(result))


@register("slack-test-ask")
@dataclass
class AskTest:
    def Main_Start(self, p: Process, input):
        slack.ask(p, self.Main_Answered, input.get("text", "Why?"), timeout=input.get("timeout"),
                  channel=input.get("channel"), approvers=input.get("approvers"))

    def Main_Answered(self, p: Process, result: slack.Result):
        p.finish(_result(result))


@register("slack-test-choose")
@dataclass
class ChooseTest:
    def Main_Start(self, p: Process, input):
        slack.choose(p, self.Main_Chosen, input.get("text", "Which one?"), input["options"],
                     timeout=input.get("timeout"), channel=input.get("channel"))

    def Main_Chosen(self, p: Process, result: slack.Result):
        p.finish(_result(result))


@register("slack-test-post")
@dataclass
class PostTest:
    def Main_Start(self, p: Process, input):
        slack.post(p, input.get("channel"), input["text"])
        p.finish({"posted": True})


@register("slack-test-fail")
@dataclass
class FailTest:
    """Asks, then raises in the same step: nothing may be recorded or posted."""

    def Main_Start(self, p: Process, input):
        slack.approve(p, self.Main_Never, "Never posted", timeout=60, channel="#finance")
        raise RuntimeError("boom after asking")

    def Main_Never(self, p: Process, result: slack.Result):
        p.finish(None)


@register("slack-test-bad")
@dataclass
class BadTest:
    def Main_Start(self, p: Process, input):
        slack.choose(p, self.Main_Never, "Pick", [], channel="#finance")

    def Main_Never(self, p: Process, result: slack.Result):
        p.finish(None)


@register("slack-test-other-path")
@dataclass
class OtherPathTest:
    """Main waits for an approval; a Watchdog goroutine finishes the process first."""

    watch_seconds: float = 60.0

    def Main_Start(self, p: Process, input):
        self.watch_seconds = float(input.get("watch_seconds", 60))
        p.go(self.Watchdog_Start)
        slack.approve(p, self.Main_Decided, "Approve the deploy?", timeout=timedelta(hours=1), channel="#ops")

    def Main_Decided(self, p: Process, result: slack.Result):
        p.finish({"by": "approval", **_result(result)})

    def Watchdog_Start(self, p: Process):
        p.select().after(timedelta(seconds=self.watch_seconds)).to(self.Watchdog_Fire)

    def Watchdog_Fire(self, p: Process):
        p.finish({"by": "watchdog"})


@register("slack-test-waits")
@dataclass
class WaitsTest:
    """Main waits on a channel it made (private); Named waits on a named (open) channel."""

    inbox: str = ""
    named: str = ""

    def Main_Start(self, p: Process, input):
        self.inbox = p.make_chan(1)
        self.named = input.get("named", "slack-test-named")
        p.go(self.Named_Start)
        p.select().recv(self.inbox).to(self.Main_Got)

    def Main_Got(self, p: Process, value):
        p.finish({"got": value})

    def Named_Start(self, p: Process):
        p.select().recv(self.named).to(self.Named_Got)

    def Named_Got(self, p: Process, value):
        p.finish({"named": value})


@register("slack-test-close")
@dataclass
class CloseTest:
    """Main asks; Closer closes the question's reply channel after a while (the workflow gives up)."""

    reply: str = ""

    def Main_Start(self, p: Process, input):
        self.reply = slack.approve(p, self.Main_Decided, "Approve?", channel="#finance")
        p.go(self.Closer_Start)

    def Main_Decided(self, p: Process, result: slack.Result):
        p.finish(_result(result) | {"closed": result.closed, "answered": result.answered})

    def Closer_Start(self, p: Process):
        p.select().after(timedelta(seconds=30)).to(self.Closer_Close)

    def Closer_Close(self, p: Process):
        p.close(self.reply)


@register("slack-test-approve-and-go-on")
@dataclass
class ApproveAndGoOn:
    """Asks in Slack with a timeout, and goes on after it: the process does not end when the
    question times out, so nothing but the timer's firing can tell Slack (issue 14's side door)."""

    outcome: dict | None = None

    def Main_Start(self, p: Process, input):
        slack.approve(p, self.Main_Decided, "Approve?", timeout=input["timeout"], channel="#finance")

    def Main_Decided(self, p: Process, result: slack.Result):
        self.outcome = _result(result)
        p.select().recv("go-on-more").to(self.Main_More)

    def Main_More(self, p: Process, value):
        p.finish({"outcome": self.outcome, "more": value})
