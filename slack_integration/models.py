"""What the Slack helpers sent, and what became of each question.

A row is written in the step's own transaction by `slack.approve/ask/choose/post` (so it exists
exactly when the step committed); the outbox job that posts it fills in the Slack channel id and
`ts`. The engine's channels stay the source of truth for answers: a question is open while its
goroutine still waits on the reply channel.
"""
from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q

from slct_workflows.models import ProcessInstance


class Kind(models.TextChoices):
    APPROVE = "approve", "Approve / reject"
    ASK = "ask", "Free-text question"
    CHOOSE = "choose", "Choice"
    POST = "post", "Plain message"


class Status(models.TextChoices):
    OPEN = "open", "Waiting for an answer"
    ANSWERED = "answered", "Answered"
    TIMED_OUT = "timed_out", "Timed out"
    CANCELLED = "cancelled", "Process cancelled"
    CLOSED = "closed", "Process took another path"
    INFO = "info", "Plain message"


class Delivery(models.TextChoices):
    PENDING = "pending", "Not posted yet"
    POSTED = "posted", "Posted to Slack"
    NO_CREDENTIALS = "no_credentials", "Not posted: no SLACK_BOT_TOKEN"
    SKIPPED = "skipped", "Not posted: closed before posting"
    FAILED = "failed", "Posting failed"


QUESTION_KINDS = (Kind.APPROVE, Kind.ASK, Kind.CHOOSE)


class SlackMessage(models.Model):
    process = models.ForeignKey(ProcessInstance, on_delete=models.CASCADE, related_name="slack_messages")
    goroutine = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # The engine channel the answer is sent into (questions only; unique per question).
    reply_channel = models.CharField(max_length=200, null=True, blank=True, unique=True)
    text = models.TextField()
    options = models.JSONField(default=list, blank=True, encoder=DjangoJSONEncoder)  # [{"value", "label"}]
    approvers = models.JSONField(default=list, blank=True)  # Slack user ids (or user names)
    deadline = models.DateTimeField(null=True, blank=True)

    # Slack's side: the channel asked for, the channel id and ts Slack answered with.
    channel = models.CharField(max_length=200, blank=True, default="")
    slack_channel = models.CharField(max_length=64, blank=True, default="")
    ts = models.CharField(max_length=64, blank=True, default="", db_index=True)
    delivery = models.CharField(max_length=16, choices=Delivery.choices, default=Delivery.PENDING)
    last_error = models.TextField(blank=True, default="")
    posted_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)  # last chat.update that showed the outcome

    # The outcome.
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    answer = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)  # the value delivered
    answered_by = models.CharField(max_length=200, blank=True, default="")
    answered_by_name = models.CharField(max_length=200, blank=True, default="")
    answered_via = models.CharField(max_length=16, blank=True, default="")  # slack | admin | other
    answered_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "Slack message"
        indexes = [
            models.Index(fields=["process", "status"], name="slack_msg_open",
                         condition=Q(status="open")),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}: {self.text[:60]}"

    @property
    def is_question(self) -> bool:
        return self.kind in QUESTION_KINDS

    @property
    def is_open(self) -> bool:
        return self.status == Status.OPEN

    def option_label(self, value: str | None) -> str:
        for opt in self.options or []:
            if opt.get("value") == value:
                return opt.get("label") or value or ""
        return value or ""


class PendingQuestion(SlackMessage):
    """The admin's "Pending questions" page (answer questions without Slack)."""

    class Meta:
        proxy = True
        verbose_name = "pending question"
        verbose_name_plural = "pending questions"
