"""The expense approval of DESIGN 1.1 (autodiscovered as this app's `workflows` module).

    services.start_process("expense", {"amount": 120})

input: {"amount": int, and optionally "channel" (default "#finance"), "timeout_seconds" (3600),
"remind_after_seconds" (1800), "approvers": [Slack user ids]}. Output:
{"approved": bool, "by": who answered (None on timeout), "timed_out": bool}.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from slack_integration import slack
from slct_workflows import Process, register


@register("expense")
@dataclass
class ExpenseProcess:
    amount: int = 0
    approved: bool | None = None
    channel: str = "#finance"
    timeout_seconds: float = 3600.0
    remind_after_seconds: float = 1800.0
    approvers: list = field(default_factory=list)

    def Main_Start(self, p: Process, input):
        self.amount = input["amount"]
        self.channel = input.get("channel", self.channel)
        self.timeout_seconds = float(input.get("timeout_seconds", self.timeout_seconds))
        self.remind_after_seconds = float(input.get("remind_after_seconds", self.remind_after_seconds))
        self.approvers = list(input.get("approvers") or [])
        p.go(self.Reminder_Start)  # a second goroutine
        slack.approve(p, self.Main_CheckApprove,
                      f"Approve expense of {self.amount}?", timeout=timedelta(seconds=self.timeout_seconds),
                      channel=self.channel, approvers=self.approvers or None)

    def Main_CheckApprove(self, p: Process, result: slack.Result):
        self.approved = result.approved  # False also on timeout
        p.finish({"approved": self.approved, "by": result.user, "timed_out": result.timed_out})

    def Reminder_Start(self, p: Process):
        p.select().after(timedelta(seconds=self.remind_after_seconds)).to(self.Reminder_Nudge)

    def Reminder_Nudge(self, p: Process):
        slack.post(p, self.channel, "An expense is still waiting for approval")
