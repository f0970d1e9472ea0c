"""What the Slack helpers sent, and what became of each question.

A row is written in the step's own transaction by `slack.approve/ask/choose/post` (so it exists
exactly when the step committed); the outbox job that posts it fills in the Slack channel id and
`ts`. The engine's channels stay the source of truth for answers: a question is open while its
goroutine still waits on the reply channel.
"""
from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import RegexValidator
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
    approvers = models.JSONField(default=list, blank=True)  # Slack user ids (matched against the verified clicker)
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


class SlackUser(models.Model):
    """A Slack user linked to a Django user: what `/slct` may do, and whose name an answer is
    recorded under, is decided by the Django user's permissions. Without a link a Slack user can
    still click a question's buttons (unless the question names approvers), but cannot use `/slct`.

    `team_id` pins the link to one workspace; empty links the id in any workspace the app is
    installed in (Slack user ids are unique across workspaces, but an id seen from an unexpected
    workspace is better refused when you know the one you use)."""

    slack_user_id = models.CharField(
        "Slack user id", max_length=32,
        validators=[RegexValidator(r"^[UW][A-Z0-9]{1,31}$", "A Slack user id looks like U012ABCDEF.")],
        help_text="From the user's Slack profile: ⋮ → Copy member ID (U012ABCDEF).",
    )
    team_id = models.CharField(
        "Slack workspace id", max_length=32, blank=True, default="",
        validators=[RegexValidator(r"^[TE][A-Z0-9]{1,31}$", "A Slack workspace id looks like T012ABCDEF.")],
        help_text="Optional: only for requests from this workspace (T012ABCDEF). Empty: any workspace.",
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="slack_users")
    note = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slack_user_id", "team_id"]
        verbose_name = "Slack user"
        constraints = [
            models.UniqueConstraint(fields=["slack_user_id", "team_id"], name="slack_user_once_per_team"),
        ]

    def __str__(self) -> str:
        where = f" in {self.team_id}" if self.team_id else ""
        return f"{self.slack_user_id}{where} → {self.user}"
