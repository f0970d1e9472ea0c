"""The author's Slack helpers, used inside a step:

    from slack_integration import slack

    def Main_Start(self, p, input):
        slack.approve(p, self.Main_CheckApprove, "Approve expense of 120?",
                      timeout=timedelta(hours=1), channel="#finance", approvers=["U012ABC"])

    def Main_CheckApprove(self, p, result: slack.Result):
        ...  # result.approved, result.user, result.timed_out, result.answered_at

`approve`, `ask` and `choose` end the goroutine's step with a select (they *are* the step's
select): receive the answer on a fresh, private reply channel, or, after `timeout`, the same
callback with `timed_out=True`. The question is recorded in the step's transaction and posted
once, after commit, from an RQ job (retried on Slack errors and rate limits). Only a verified
Slack click or the admin's Pending questions page answers; who answered comes from what the
server recorded (docs/SLACK.md, "What a Result holds").
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable

from django.utils.dateparse import parse_datetime

from slct_workflows import Process
from slct_workflows.errors import DeclarationError

from .conf import SLACK_USER_ID

__all__ = ["Result", "UnverifiedAnswer", "approve", "ask", "choose", "post"]

POST_JOB = "slack_integration.jobs.post_question"
MAX_TEXT = 3000
MAX_OPTIONS = 100


class UnverifiedAnswer(DeclarationError):
    """A question's reply channel delivered something that is not a server-verified answer.

    Only two doors put answers there: a signature-checked Slack click or modal, and the admin's
    Pending questions page; both record who answered as the value's provenance. Anything else
    (a step or server code sending into the reply channel) fails the step instead of being read
    as an approval, a rejection or a timeout. Deterministic: the step is not retried."""


@dataclass(frozen=True)
class Result:
    """What a question's callback receives. Each field says where it comes from:

    approved     approve(): True if approved; False when rejected, timed out or closed
    text         ask(): the answer; choose(): the chosen option's label
    choice       choose(): the chosen option's value
    user         who answered: the verified Slack user id (via "slack"), or the Django user
                 name (via "admin"). From the server-recorded provenance, never from the value
    user_name    Slack user name (from the signed request) / the admin user's full name
    django_user  the Django user name: the Slack user's linked account, or the admin user
    via          "slack" or "admin" (the door the answer came through)
    timed_out    the select's timer fired before an answer (everything else is empty then)
    closed       a step closed the reply channel: no answer, not a timeout
    answered_at  when the answer was given (Slack's action time, or the admin's clock)
    kind         approve | ask | choose
    """

    approved: bool = False
    text: str | None = None
    choice: str | None = None
    user: str | None = None
    user_name: str | None = None
    django_user: str | None = None
    via: str | None = None
    timed_out: bool = False
    closed: bool = False
    answered_at: datetime | None = None
    kind: str | None = None

    @property
    def answered(self) -> bool:
        return not (self.timed_out or self.closed)

    @classmethod
    def from_delivery(cls, value: Any, source: dict | None, closed: bool) -> "Result":
        """Decode what the reply-channel case received. `source` is what the engine recorded of
        where the value came from (not part of the value): {"timer": ...} when the timeout fired,
        {"external": key, "sender": {...}} for an external send with the sender's provenance."""
        source = source if isinstance(source, dict) else {}
        if "timer" in source:
            return cls(timed_out=True)
        if closed:
            return cls(closed=True)
        sender = source.get("sender")
        if not (isinstance(sender, dict) and sender.get("answer") is True and sender.get("via") in ("slack", "admin")
                and isinstance(value, dict)):
            origin = {k: v for k, v in source.items() if k != "sender"} or None
            raise UnverifiedAnswer(
                f"a question's reply channel received {_short(value)} from {origin or 'an unknown source'}, "
                "which is not an answer given in Slack or on the admin's Pending questions page; "
                "answers only come through those (tests: slack_integration.testing.answer)"
            )
        via = sender["via"]
        slack_user = _str(sender.get("slack_user"))
        django_user = _str(sender.get("user"))
        at = value.get("answered_at")
        at = parse_datetime(at) if isinstance(at, str) else None
        kind = _str(value.get("kind"))
        return cls(
            approved=kind == "approve" and value.get("approved") is True,
            text=_str(value.get("text")),
            choice=_str(value.get("choice")),
            user=slack_user if via == "slack" else django_user,
            user_name=_str(sender.get("name")) or django_user or slack_user,
            django_user=django_user,
            via=via,
            answered_at=at,
            kind=kind,
        )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


# -- helpers --------------------------------------------------------------------------------------

def approve(p: Process, callback: Callable[..., Any] | str, text: str, *, timeout: timedelta | float | None = None,
            channel: str | None = None, approvers: Iterable[str] | None = None) -> str:
    """Post `text` with Approve and Reject buttons; `callback(p, result: slack.Result)` runs with
    the answer, or after `timeout` with `timed_out=True, approved=False`. With `approvers`
    (Slack user ids), clicks from anyone else are refused; without, anyone who can see the
    message in Slack may answer. Returns the reply channel's name (private: nobody outside
    sends into it)."""
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
        raise p.declaration_error(f"Slack message text must be a non-empty string, got {text!r}")
    if len(text) > MAX_TEXT:
        raise p.declaration_error(f"Slack message text is {len(text)} characters; the limit is {MAX_TEXT}")
    return text


def _timeout(p: Process, timeout: Any) -> timedelta | None:
    if timeout is None:
        return None
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        timeout = timedelta(seconds=timeout)
    # > 0: a question that times out the moment it is asked asks nothing (and a timer due at
    # commit fires without the engine's timer provenance, which the Result needs).
    if not isinstance(timeout, timedelta) or timeout.total_seconds() <= 0:
        raise p.declaration_error(f"timeout must be a positive timedelta (or seconds), got {timeout!r}")
    return timeout


def _channel(p: Process, channel: Any) -> str:
    from . import conf

    if channel is None:
        return conf.default_channel()
    if not isinstance(channel, str) or len(channel) > 200:
        raise p.declaration_error(f"Slack channel must be a string (a #name or an id), got {channel!r}")
    return channel


def _approvers(p: Process, approvers: Any) -> list[str]:
    """Slack user ids only: they are matched against the verified id of who clicks, never
    against names (a Slack display name or a Django username anyone could share)."""
    if approvers is None:
        return []
    if isinstance(approvers, str):
        approvers = [approvers]
    out = [a.strip().lstrip("@") if isinstance(a, str) else a for a in list(approvers)]
    bad = [a for a in out if not isinstance(a, str) or not SLACK_USER_ID.match(a)]
    if bad:
        raise p.declaration_error(f"approvers must be Slack user ids like U012ABCDEF (not names), got {bad!r}")
    return out


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
            raise p.declaration_error(f"an option must be a string, a (value, label) pair or a dict with 'value', got {opt!r}")
        if not isinstance(value, str) or not value or not isinstance(label, str) or not label:
            raise p.declaration_error(f"option values and labels must be non-empty strings, got {opt!r}")
        out.append({"value": value, "label": label})
    if not out:
        raise p.declaration_error("choose() needs at least one option")
    if len(out) > MAX_OPTIONS:
        raise p.declaration_error(f"choose() takes at most {MAX_OPTIONS} options, got {len(out)}")
    if len({o["value"] for o in out}) != len(out):
        raise p.declaration_error("choose() option values must be unique")
    return out
