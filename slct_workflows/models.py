"""The source of truth: processes, goroutines, channels, buffers, pending cases, history, outbox.

Redis only carries "go and run goroutine N"; everything a step needs is here.
"""
from __future__ import annotations

import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce

from slct_workflows.semantics import describe_case


def new_id() -> str:
    return uuid.uuid4().hex


class ProcessStatus(models.TextChoices):
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


PROCESS_TRANSITIONS: dict[str, set[str]] = {
    ProcessStatus.RUNNING: {ProcessStatus.DONE, ProcessStatus.FAILED, ProcessStatus.CANCELLED},
    ProcessStatus.FAILED: {ProcessStatus.RUNNING, ProcessStatus.CANCELLED},
    ProcessStatus.DONE: set(),
    ProcessStatus.CANCELLED: set(),
}


class NextKind(models.TextChoices):
    """Why a runnable goroutine runs: the case of its select that fired, or how it started."""

    START = "start"
    GO = "go"
    RECV = "recv"
    SEND = "send"
    TIMER = "timer"
    DEFAULT = "default"


class GoroutineStatus(models.TextChoices):
    RUNNABLE = "runnable", "Runnable"
    BLOCKED = "blocked", "Blocked"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    # Stopped by the runaway guard (its selects kept firing at once); an operator resumes it.
    PAUSED = "paused", "Paused"


GOROUTINE_TRANSITIONS: dict[str, set[str]] = {
    GoroutineStatus.RUNNABLE: {
        GoroutineStatus.RUNNABLE, GoroutineStatus.BLOCKED, GoroutineStatus.DONE,
        GoroutineStatus.FAILED, GoroutineStatus.CANCELLED, GoroutineStatus.PAUSED,
    },
    GoroutineStatus.PAUSED: {GoroutineStatus.RUNNABLE, GoroutineStatus.CANCELLED},
    GoroutineStatus.BLOCKED: {GoroutineStatus.RUNNABLE, GoroutineStatus.DONE, GoroutineStatus.CANCELLED},
    GoroutineStatus.FAILED: {GoroutineStatus.RUNNABLE, GoroutineStatus.CANCELLED},
    GoroutineStatus.DONE: set(),
    GoroutineStatus.CANCELLED: set(),
}


class InvalidTransition(Exception):
    pass


def check_transition(table: dict[str, set[str]], old: str, new: str, what: str) -> None:
    if new not in table[old]:
        raise InvalidTransition(f"{what} cannot go from {old} to {new}")


# The statuses of a process that is not over (it may run again: a failed one can be retried).
PROCESS_LIVE = (ProcessStatus.RUNNING, ProcessStatus.FAILED)
# The statuses of a goroutine that is not over (runnable, waiting, failed or paused).
GOROUTINE_LIVE = (GoroutineStatus.RUNNABLE, GoroutineStatus.BLOCKED, GoroutineStatus.FAILED, GoroutineStatus.PAUSED)


class ProcessInstance(models.Model):
    id = models.CharField(primary_key=True, max_length=200, default=new_id)
    definition = models.CharField(max_length=200, db_index=True)
    version = models.CharField(max_length=50, blank=True, default="")
    status = models.CharField(max_length=16, choices=ProcessStatus.choices, default=ProcessStatus.RUNNING)
    state = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    input = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    output = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    error = models.TextField(blank=True, default="")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    result_channel = models.CharField(max_length=200, blank=True, default="")
    step_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "process"
        verbose_name_plural = "processes"
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["status", "definition"], name="slct_process_active",
                condition=Q(status__in=["running", "failed"]),
            ),
            # Retention's batch selection (slct_workflows/retention.py), oldest finished first:
            # a failed process has no finished_at, its last write is when it failed.
            models.Index(
                Coalesce("finished_at", "updated_at"), F("id"), name="slct_process_retention",
                condition=Q(status__in=["done", "cancelled", "failed"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.definition} {self.id}"

    def set_status(self, new: str) -> None:
        check_transition(PROCESS_TRANSITIONS, self.status, new, f"process {self.id}")
        self.status = new


class Goroutine(models.Model):
    process = models.ForeignKey(ProcessInstance, on_delete=models.CASCADE, related_name="goroutines")
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=GoroutineStatus.choices, default=GoroutineStatus.RUNNABLE)
    # What runs next when runnable: the method, what it receives, and which case fired.
    next_method = models.CharField(max_length=200, blank=True, default="")
    next_value = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    next_closed = models.BooleanField(default=False)
    # Which case fired (or "start"/"go"): structured, written by runtime.runnable.next_fields only.
    next_kind = models.CharField(max_length=16, choices=NextKind.choices, blank=True, default="")
    next_channel = models.CharField(max_length=200, blank=True, default="")
    next_at = models.DateTimeField(null=True, blank=True)  # the timer's deadline when a timer fired
    next_source = models.JSONField(null=True, blank=True)  # who sent the value (for the timeline)
    # Bumped every time the goroutine's select is consumed: a pending case or a timer job that
    # carries an older number is stale and does nothing.
    wait_seq = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    runnable_since = models.DateTimeField(null=True, blank=True)
    # The runaway guard: steps in a row whose select fired at once (reset when it blocks), and
    # why the goroutine was paused.
    hot_steps = models.PositiveIntegerField(default=0)
    paused_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["process", "name"], name="slct_goroutine_unique_name")]
        indexes = [
            models.Index(
                fields=["status", "runnable_since"], name="slct_goroutine_active",
                condition=Q(status__in=["runnable", "blocked"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.process_id}/{self.name}"

    @property
    def next_case(self) -> str:
        """What fired, for people ("recv orders", "timer 2026-...", "start"); never parsed back."""
        return describe_case(self.next_kind, self.next_channel, self.next_at, self.next_closed)

    def set_status(self, new: str) -> None:
        check_transition(GOROUTINE_TRANSITIONS, self.status, new, f"goroutine {self}")
        self.status = new

    @property
    def kind(self) -> str:
        """The method prefix this goroutine runs (`Worker` for goroutines `Worker`, `Worker#2`)."""
        return self.name.split("#", 1)[0]


class SendPolicy(models.TextChoices):
    """Who may send into (or close) a channel from outside a step (docs/SECURITY.md)."""

    OPEN = "open", "Open to holders of the send permission"
    RESTRICTED = "restricted", "Restricted to a permission or group"
    PRIVATE = "private", "Private: steps and the runtime only"


class Channel(models.Model):
    name = models.CharField(primary_key=True, max_length=200)
    capacity = models.PositiveIntegerField(default=0)
    closed = models.BooleanField(default=False)
    # The process whose step made the channel ("" for named channels and REST-made ones) and
    # who may send into it from outside.
    owner = models.CharField(max_length=200, blank=True, default="")
    policy = models.CharField(max_length=16, choices=SendPolicy.choices, default=SendPolicy.OPEN)
    send_permission = models.CharField(max_length=200, blank=True, default="")  # "app_label.codename"
    send_group = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        permissions = [("operator_send", "Can send into and close channels from the admin (audited)")]

    def __str__(self) -> str:
        return self.name


class BufferedValue(models.Model):
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="buffer")
    seq = models.PositiveBigIntegerField()
    value = models.JSONField(null=True, encoder=DjangoJSONEncoder)
    source = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["channel", "seq"]
        constraints = [models.UniqueConstraint(fields=["channel", "seq"], name="slct_buffer_order")]


class CaseKind(models.TextChoices):
    RECV = "recv", "Receive"
    SEND = "send", "Send"
    TIMER = "timer", "Timer"


class PendingCaseQuerySet(models.QuerySet):
    def due_timers(self, now) -> "PendingCaseQuerySet":
        """Timer cases due at `now` whose goroutine still waits (the partial index slct_pending_timers):
        the one due-timers query, used to fire them (runtime.timers), to re-enqueue them (the
        sweep) and to show them overdue (the dashboard, the metrics, the admin's filter)."""
        return self.filter(kind="timer", deadline__lte=now, goroutine__status=GoroutineStatus.BLOCKED)


class PendingCase(models.Model):
    """One case of a blocked select (or an external send left waiting). Oldest id = oldest waiter."""

    objects = PendingCaseQuerySet.as_manager()

    goroutine = models.ForeignKey(Goroutine, null=True, blank=True, on_delete=models.CASCADE, related_name="pending")
    external_send = models.ForeignKey(
        "ExternalSend", null=True, blank=True, on_delete=models.CASCADE, related_name="pending"
    )
    wait_seq = models.PositiveIntegerField(default=0)
    case_index = models.PositiveSmallIntegerField(default=0)
    kind = models.CharField(max_length=8, choices=CaseKind.choices)
    channel = models.ForeignKey(Channel, null=True, blank=True, on_delete=models.CASCADE, related_name="pending")
    value = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    deadline = models.DateTimeField(null=True, blank=True)
    target = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["channel", "kind", "id"], name="slct_pending_by_channel"),
            models.Index(fields=["deadline"], name="slct_pending_timers", condition=Q(kind="timer")),
        ]

    def describe(self) -> str:
        if self.kind == CaseKind.TIMER:
            return f"timer {self.deadline.isoformat() if self.deadline else ''}"
        return f"{self.kind} {self.channel_id}"


class EventKind(models.TextChoices):
    START = "start", "Started"
    STEP = "step", "Step"
    ERROR = "error", "Step failed"
    FAILED = "failed", "Failed"
    FINISH = "finish", "Finished"
    CANCEL = "cancel", "Cancelled"
    RETRY = "retry", "Retried"
    SEND = "send", "External send"
    CLOSE = "close", "Channel closed"
    MIGRATE = "migrate", "Status migrated"
    STATE = "state", "State edited by an operator"
    PAUSE = "pause", "Paused by the runaway guard"
    RESUME = "resume", "Resumed by an operator"


class Event(models.Model):
    """History: one row per step (and per operator or external action)."""

    process = models.ForeignKey(
        ProcessInstance, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    seq = models.PositiveIntegerField(default=0)  # per process, strictly increasing
    kind = models.CharField(max_length=16, choices=EventKind.choices)
    goroutine = models.CharField(max_length=100, blank=True, default="")
    method = models.CharField(max_length=200, blank=True, default="")
    case = models.CharField(max_length=300, blank=True, default="")
    channel = models.CharField(max_length=200, blank=True, default="", db_index=True)
    value = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    source = models.JSONField(null=True, blank=True)
    detail = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    error = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["process", "seq"], name="slct_event_history")]

    @property
    def duration_ms(self) -> float:
        return (self.finished_at - self.started_at).total_seconds() * 1000


class SendStatus(models.TextChoices):
    DELIVERED = "delivered", "Delivered to a waiting receiver"
    BUFFERED = "buffered", "Buffered"
    WAITING = "waiting", "Waiting for a receiver"
    RECEIVED = "received", "Received after waiting"
    NO_RECEIVER = "no_receiver", "Refused: no receiver"
    CLOSED = "closed", "Channel closed before delivery"


class ExternalSend(models.Model):
    """A send from outside, keyed by its idempotency key; a repeat returns this row."""

    key = models.CharField(primary_key=True, max_length=255)
    channel = models.CharField(max_length=200, db_index=True)
    value = models.JSONField(null=True, encoder=DjangoJSONEncoder)
    fingerprint = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=SendStatus.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivered_to = models.CharField(max_length=300, blank=True, default="")
    # Who sent it, as the server established it (the REST/admin user, the verified Slack user).
    sender = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


class OutboxStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Outbox(models.Model):
    """A side effect recorded in a step's transaction and performed once after commit."""

    process = models.ForeignKey(ProcessInstance, null=True, blank=True, on_delete=models.SET_NULL)
    func = models.CharField(max_length=300)
    args = models.JSONField(default=list, encoder=DjangoJSONEncoder)
    kwargs = models.JSONField(default=dict, encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=16, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    result = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    not_before = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "outbox"
        indexes = [models.Index(fields=["status", "created_at"], name="slct_outbox_pending",
                                condition=Q(status="pending"))]


class Schedule(models.Model):
    """A process started on a schedule (slct_workflows.schedules). Rows declared in code
    (`@register(..., schedule=...)`) are written by the workers at each tick; operators add
    their own in the admin."""

    CATCHUP_CHOICES = [("skip", "Skip missed slots"), ("latest", "Run the latest missed slot once")]

    name = models.CharField(max_length=183, unique=True)
    definition = models.CharField(max_length=200)
    cron = models.CharField(max_length=200, blank=True, default="")
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    input = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    enabled = models.BooleanField(default=True)
    catchup = models.CharField(max_length=16, choices=CATCHUP_CHOICES, default="skip")
    declared_in_code = models.BooleanField(default=False)
    last_slot = models.DateTimeField(null=True, blank=True)
    last_process_id = models.CharField(max_length=200, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    next_run = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["next_run"], name="slct_schedule_due", condition=Q(enabled=True))]

    def __str__(self) -> str:
        return self.name
