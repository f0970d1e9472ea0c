"""The `/slct` slash command: `send` into a channel, `status` of a process.

The Slack user who typed it (verified by the request signature) must be linked to a Django user
(admin → Slack users, or SLACK_USER_MAP); that user's permissions decide, through the same
service-layer checks as REST:

* `/slct send` needs `slct_workflows.add_externalsend` and the channel's send policy must admit
  the user (private channels, such as question reply channels, admit nobody from outside);
* `/slct status` needs `slct_workflows.view_processinstance`, and shows channel names only where
  the user could send into the channel (a question's reply channel shows as "an answer to Slack
  question #N").

`SLACK_COMMAND_USERS`, when set, is one more gate in front (only those Slack ids may use `/slct`
at all); it never lets anyone in.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from slct_workflows import access, clock
from slct_workflows import services as wf
from slct_workflows.access import Sender
from slct_workflows.errors import Forbidden, SlctError
from slct_workflows.models import GOROUTINE_LIVE, Channel, Goroutine, GoroutineStatus, PendingCase
from slct_workflows.runtime import consistent_read

from . import conf, identity
from .models import Kind, SlackMessage, Status
from .payloads import Command

VIEW_PERMISSION = "slct_workflows.view_processinstance"

USAGE = (
    "*Usage*\n"
    "`/slct send <channel> <json value>` sends a value into a process channel\n"
    "`/slct status <process id>` shows what a process is doing"
)
NOT_LINKED = (
    "Sorry, your Slack user is not linked to an account here; ask an admin to add it under "
    "Slack users (admin → Slack integration → Slack users)."
)
NOT_ALLOWED = "Sorry, you are not allowed to use `/slct`."


def run(cmd: Command) -> str:
    """The ephemeral reply to a verified, well-formed `/slct` request."""
    parts = cmd.text.strip().split(None, 2)
    sub = parts[0].lower() if parts else ""
    if sub not in ("send", "status"):
        return USAGE
    allowed = conf.command_users()
    if allowed and cmd.user_id not in allowed:
        return NOT_ALLOWED
    user = identity.django_user(cmd.user_id, cmd.team_id)
    if user is None:
        return NOT_LINKED
    if not user.is_active:
        return f"Sorry, the account your Slack user is linked to ({user.get_username()}) is inactive."
    sender = identity.command_sender(user, cmd.user_id)
    if sub == "send":
        return send(cmd, sender, parts[1:])
    return status(sender, parts[1:])


def send(cmd: Command, sender: Sender, args: list[str]) -> str:
    if len(args) < 2:
        return "Usage: `/slct send <channel> <json value>`, e.g. `/slct send approvals {\"ok\": true}`"
    channel, raw = args[0], args[1]
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        msg = getattr(exc, "msg", "nested too deep")
        return f"The value is not JSON ({msg}). Quote strings: `/slct send {channel} \"hello\"`"
    if not cmd.trigger_id:
        return "Slack sent no trigger id; cannot make the send idempotent."
    key = f"slack-command:{cmd.team_id}:{cmd.trigger_id}"
    try:
        result = wf.send(channel, value, key, wait=True, sender=sender)
    except SlctError as exc:
        return f"Not sent: {exc}"
    words = {
        "delivered": "delivered to a waiting receiver", "buffered": "buffered",
        "waiting": "waiting for a receiver", "received": "received", "closed": "refused: the channel closed",
    }
    where = f" ({result.send.delivered_to})" if result.send is not None and result.send.delivered_to else ""
    again = " (repeated request: nothing new sent)" if result.repeated else ""
    return f"Sent to `{channel}`: {words.get(result.status, result.status)}{where}{again}"


def status(sender: Sender, args: list[str]) -> str:
    if not sender.has_perm(VIEW_PERMISSION):
        return f"Sorry, you need the permission {VIEW_PERMISSION} to see processes."
    if not args:
        return "Usage: `/slct status <process id>`"
    with consistent_read():  # the process and its goroutines' waits from one snapshot
        return _status(sender, args[0])


def _status(sender: Sender, process_id: str) -> str:
    try:
        proc = wf.get_process(process_id)
    except SlctError as exc:
        return str(exc)
    lines = [f"*{proc.definition}* `{proc.id}` is *{proc.status}* ({proc.step_count} steps)"]
    lines += [f"• {line}" for line in goroutine_lines(proc.pk, sender, clock.now())]
    if proc.output is not None:
        lines.append(f"Output: `{json.dumps(proc.output, sort_keys=True)[:1000]}`")
    if proc.error:
        lines.append(f"Error: {proc.error.splitlines()[0][:500]}")
    open_q = SlackMessage.objects.filter(process=proc, status=Status.OPEN).exclude(kind=Kind.POST).count()
    if open_q:
        lines.append(f"{open_q} open Slack question(s)")
    return "\n".join(lines)




def goroutine_lines(process_id: str, viewer: Sender, now: datetime) -> list[str]:
    """One line per live goroutine: what it waits for, or why it is paused or failed."""
    goroutines = list(Goroutine.objects.filter(process_id=process_id, status__in=GOROUTINE_LIVE).order_by("id"))
    cases: dict[int, list[PendingCase]] = {}
    for c in PendingCase.objects.filter(goroutine__in=goroutines).order_by("goroutine_id", "case_index"):
        cases.setdefault(c.goroutine_id, []).append(c)
    names = {c.channel_id for cs in cases.values() for c in cs if c.channel_id}
    rows = Channel.objects.in_bulk(list(names))
    questions = dict(
        SlackMessage.objects.filter(reply_channel__in=names).values_list("reply_channel", "pk")
    )

    def channel(name: str) -> str:
        if name in questions:
            return f"an answer to Slack question #{questions[name]}"
        return f"`{name}`" if _may_send(rows.get(name), viewer) else "a channel you cannot send into"

    out = []
    for g in goroutines:
        if g.status == GoroutineStatus.PAUSED:
            out.append(f"{g.name} paused: {_first_line(g.paused_reason) or 'no reason given'}")
        elif g.status == GoroutineStatus.FAILED:
            out.append(f"{g.name} failed: {_first_line(g.last_error) or 'no error recorded'}")
        elif g.status == GoroutineStatus.RUNNABLE:
            out.append(f"{g.name} is ready to run {g.next_method}")
        else:
            parts = [_case(c, channel, now) for c in cases.get(g.id, [])]
            out.append(f"{g.name} waits " + " or ".join(parts) if parts else f"{g.name} is blocked")
    return out


def _case(c: PendingCase, channel: Any, now: datetime) -> str:
    if c.kind == "recv":
        what = channel(c.channel_id)
        return (f"for {what}" if what.startswith("an answer") else f"to receive on {what}") + f", then {c.target}"
    if c.kind == "send":
        return f"to send on {channel(c.channel_id)}, then {c.target}"
    left = (c.deadline - now).total_seconds() if c.deadline else 0
    if left > 0:
        h, rem = divmod(int(left), 3600)
        m, s = divmod(rem, 60)
        return f"{h:02d}:{m:02d}:{s:02d} left on a timer, then {c.target}"
    return f"a timer that is due, then {c.target}"


def _may_send(row: Channel | None, viewer: Sender) -> bool:
    if row is None:
        return False
    try:
        access.check(row, viewer, "send")
    except Forbidden:
        return False
    return True


def _first_line(text: str) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:300] if lines else ""
