"""The author's Slack helpers, used inside a step:

    from slack_integration import slack

    def Main_Start(self, p, input):
        slack.approve(p, self.Main_CheckApprove, "Approve expense of 120?",
                      timeout=timedelta(hours=1), channel="#finance", approvers=["U012ABC"])

    def Main_CheckApprove(self, p, result: slack.Result):
        ...  # result.approved, result.user, result.timed_out, result.answered_at

`approve`, `ask` and `choose` end the goroutine's step with a select (they *are* the step's
select): receive the answer on a fresh reply channel, or, after `timeout`, the same callback with
`timed_out=True`. The question is recorded in the step's transaction and posted once, after
commit, from an RQ job (retried on Slack errors and rate limits).
"""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from django.utils.dateparse import parse_datetime

from slct_workflows import Process

__all__ = ["Result", "approve", "ask", "choose", "post"]

POST_JOB = "slack_integration.jobs.post_question"
MAX_TEXT = 3000
MAX_OPTIONS = 100


@dataclass(frozen=True)
class Result:
    """What a question's callback receives.

    approved     approve(): True if approved (False when rejected *and* on timeout)
    text         ask(): the answer; choose(): the chosen option's label
    choice       choose(): the chosen option's value
    user         Slack user id of who answered (the Django user name when answered in the admin)
    user_name    Slack user name / Django user name
    timed_out    no answer before the timeout (everything else is empty then)
    answered_at  when the answer was given
    via          "slack" or "admin"
    """

    approved: bool = False
    text: str | None = None
    choice: str | None = None
    user: str | None = None
    user_name: str | None = None
    timed_out: bool = False
    answered_at: datetime | None = None
    via: str | None = None
    kind: str | None = None

    @property
    def answered(self) -> bool:
        return not self.timed_out

    @classmethod
    def from_channel_value(cls, value: Any) -> "Result":
        """Decode the value received on the reply channel; None (the timer case) is a timeout."""
        if value is None:
            return cls(timed_out=True)
        if isinstance(value, bool):  # a bare true/false sent from elsewhere (REST, /slct send)
            return cls(approved=value, via="other")
        if isinstance(value, (str, int, float)):
            return cls(text=str(value), choice=str(value), via="other")
        if not isinstance(value, dict):
            return cls(text=str(value), via="other")
        at = value.get("answered_at")
        if isinstance(at, str):
            at = parse_datetime(at)
        return cls(
            approved=bool(value.get("approved", False)),
            text=value.get("text"),
            choice=value.get("choice"),
            user=value.get("user"),
            user_name=value.get("user_name"),
            timed_out=bool(value.get("timed_out", False)),
            answered_at=at if isinstance(at, datetime) else None,
            via=value.get("via"),
            kind=value.get("kind"),
        )

    def to_value(self) -> dict:
        """The channel value this result is decoded from (JSON)."""
        data = asdict(self)
        data["answered_at"] = self.answered_at.isoformat() if self.answered_at else None
        return data


# -- helpers --------------------------------------------------------------------------------------

def approve(p: Process, callback: Callable[..., Any] | str, text: str, *, timeout: timedelta | float | None = None,
            channel: str | None = None, approvers: Iterable[str] | None = None) -> str:
    """Post `text` with Approve and Reject buttons; `callback(p, result: slack.Result)` runs with
    the answer, or after `timeout` with `timed_out=True, approved=False`. With `approvers`
    (Slack user ids), clicks from anyone else are refused. Returns the reply channel's name."""
    return _question(p, callback, "approve", text, timeout=timeout, channel=channel, approvers=approvers)


def ask(p: Process, callback: Callable[..., Any] | str, question: str, *, timeout: timedelta | float | None = None,
        channel: str | None = None, approvers: Iterable[str] | None = None) -> str:
    """Ask a free-text question (an "Answer…" button opens a form); the callback's result has
    `text` and `user` (or `timed_out=True`)."""
    return _question(p, callback, "ask", question, timeout=timeout, channel=channel, approvers=approvers)


def choose(p: Process, callback: Callable[..., Any] | str, text: str, options: Iterable[Any], *,
           timeout: timedelta | float | None = None, channel: str | None = None,
           approvers: Iterable[str] | None = None) -> str:
    """Offer one of several `options`: strings, `(value, label)` pairs or `{"value", "label"}`
    dicts. Up to five show as buttons, more as a menu. The result has `choice` (the value) and
    `text` (the label)."""
    return _question(p, callback, "choose", text, timeout=timeout, channel=channel, approvers=approvers,
                     options=_options(p, options))


def post(p: Process, channel: str | None, text: str) -> None:
    """Post a plain message, once, after this step commits."""
    from .models import Kind, SlackMessage, Status

    text = _text(p, text)
    message = SlackMessage.objects.create(
        process_id=p.process_id, goroutine=p.goroutine, kind=Kind.POST, text=text,
        channel=_channel(p, channel), status=Status.INFO,
    )
    p.on_commit(POST_JOB, message.pk)


# -- internals --------------------------------------------------------------------------------------

def _question(p: Process, callback, kind: str, text: str, *, timeout, channel, approvers, options=None) -> str:
    from .models import SlackMessage

    text = _text(p, text)
    delay = _timeout(p, timeout)
    approvers = _approvers(p, approvers)
    reply = p.make_chan(0, name=f"slack-{uuid.uuid4().hex}")
    select = p.select().recv(reply).to(callback)
    if delay is not None:
        select.after(delay).to(callback)
    message = SlackMessage.objects.create(
        process_id=p.process_id, goroutine=p.goroutine, kind=kind, reply_channel=reply, text=text,
        options=options or [], approvers=approvers, channel=_channel(p, channel),
        deadline=p.now() + delay if delay is not None else None,
    )
    p.on_commit(POST_JOB, message.pk)
    return reply


def _text(p: Process, text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise p._fail(f"Slack message text must be a non-empty string, got {text!r}")
    if len(text) > MAX_TEXT:
        raise p._fail(f"Slack message text is {len(text)} characters; the limit is {MAX_TEXT}")
    return text


def _timeout(p: Process, timeout: Any) -> timedelta | None:
    if timeout is None:
        return None
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        timeout = timedelta(seconds=timeout)
    if not isinstance(timeout, timedelta) or timeout.total_seconds() < 0:
        raise p._fail(f"timeout must be a timedelta (or seconds) >= 0, got {timeout!r}")
    return timeout


def _channel(p: Process, channel: Any) -> str:
    from . import conf

    if channel is None:
        return conf.default_channel()
    if not isinstance(channel, str) or len(channel) > 200:
        raise p._fail(f"Slack channel must be a string (a #name or an id), got {channel!r}")
    return channel


def _approvers(p: Process, approvers: Any) -> list[str]:
    if approvers is None:
        return []
    if isinstance(approvers, str):
        approvers = [approvers]
    out = list(approvers)
    if not all(isinstance(a, str) and a.strip() for a in out):
        raise p._fail(f"approvers must be Slack user ids (strings), got {out!r}")
    return [a.strip().lstrip("@") for a in out]


def _options(p: Process, options: Any) -> list[dict]:
    out: list[dict] = []
    for opt in list(options or []):
        if isinstance(opt, str):
            value, label = opt, opt
        elif isinstance(opt, (tuple, list)) and len(opt) == 2:
            value, label = opt
        elif isinstance(opt, dict) and "value" in opt:
            value, label = opt["value"], opt.get("label", opt["value"])
        else:
            raise p._fail(f"an option must be a string, a (value, label) pair or a dict with 'value', got {opt!r}")
        if not isinstance(value, str) or not value or not isinstance(label, str) or not label:
            raise p._fail(f"option values and labels must be non-empty strings, got {opt!r}")
        out.append({"value": value, "label": label})
    if not out:
        raise p._fail("choose() needs at least one option")
    if len(out) > MAX_OPTIONS:
        raise p._fail(f"choose() takes at most {MAX_OPTIONS} options, got {len(out)}")
    if len({o["value"] for o in out}) != len(out):
        raise p._fail("choose() option values must be unique")
    return out
