"""Helpers shared by the admin pages: permissions, links, JSON display, confirmation pages."""
from __future__ import annotations

import json
import re
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from slct_workflows.errors import SlctError

APP = "slct_workflows"
PERM_OPERATE_PROCESS = f"{APP}.change_processinstance"  # cancel, retry, sweep
PERM_SEND = f"{APP}.operator_send"  # send a value into a channel (an audited operator action)
PERM_CLOSE = f"{APP}.change_channel"  # close a channel
PERM_VIEW_PROCESS = (f"{APP}.view_processinstance", f"{APP}.change_processinstance")


def require(request, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied(f"you need the permission {perm}")


def can_view_processes(user) -> bool:
    return any(user.has_perm(p) for p in PERM_VIEW_PROCESS)


def process_url(pid: str, action: str = "change") -> str:
    return reverse(f"admin:{APP}_processinstance_{action}", args=[quote(pid)])


def channel_url(name: str, action: str = "change") -> str:
    return reverse(f"admin:{APP}_channel_{action}", args=[quote(name)])


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, cls=DjangoJSONEncoder)


def json_block(value: Any) -> SafeString:
    return format_html('<pre class="slct-json">{}</pre>', pretty_json(value))


def process_link(pid: str | None) -> SafeString | str:
    if not pid:
        return "—"
    return format_html('<a href="{}">{}</a>', process_url(pid), pid)


def channel_link(name: str | None) -> SafeString | str:
    if not name:
        return "—"
    return format_html('<a href="{}"><code>{}</code></a>', channel_url(name), name)


_TICKS = re.compile(r"`([^`]+)`")


def waits_html(text: str) -> SafeString:
    """"Main waits to receive on `answers` ..." with each `channel` linked to its admin page."""
    out, last = [], 0
    for m in _TICKS.finditer(text):
        out.append(escape(text[last:m.start()]))
        out.append(channel_link(m.group(1)))
        last = m.end()
    out.append(escape(text[last:]))
    return mark_safe("".join(out))


def service_error(request, exc: SlctError, what: str) -> None:
    messages.error(request, f"Could not {what}: {exc}")


def confirm_page(
    model_admin, request, *, title: str, question: str, verb: str, back_url: str, details: list[tuple[str, Any]] = (),
    hidden: dict[str, Any] | None = None, reason_field: bool = False, obj: Any = None, danger: bool = False,
    status: int = 200,
) -> TemplateResponse:
    """The intermediate page of every operator action: what will happen, and a POST button."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "question": question,
        "verb": verb,
        "back_url": back_url,
        "details": details,
        "hidden": [
            (name, v) for name, value in (hidden or {}).items()
            for v in (value if isinstance(value, (list, tuple)) else [value])
        ],
        "reason_field": reason_field,
        "object": obj,
        "opts": model_admin.model._meta,
        "danger": danger,
    }
    return TemplateResponse(request, "admin/slct_workflows/confirm.html", context, status=status)


def confirmed(request) -> bool:
    return request.method == "POST" and request.POST.get("confirm") == "yes"


# -- what a goroutine waits for, with its counterparts named and linked ------------------------

def role_link(role, channel: str) -> SafeString:
    """A channel as the admin shows it: a child process, a Slack question, a state field, a name."""
    if role is None or role.kind == "channel":
        if role is not None and role.field:
            return format_html(
                '<a href="{}" title="{}"><code>state.{}</code></a> <span class="slct-muted">({})</span>',
                channel_url(channel), channel, role.field, channel[:13] + "…",
            )
        return channel_link(channel)
    if role.url:
        return format_html('<a href="{}" class="slct-{}-link">{}</a>', role.url, role.kind, role.words)
    return format_html("{}", role.words)


def _timer_words(deadline, now) -> str:
    left = (deadline - now).total_seconds() if deadline else 0
    if left > 0:
        h, rem = divmod(int(left), 3600)
        m, s = divmod(rem, 60)
        return f"{h:02d}:{m:02d}:{s:02d} left on a timer"
    return f"a timer that is due (overdue by {int(-left)}s)"


def goroutine_waits_html(view, roles: dict, since=None, now=None) -> SafeString:
    """"Main waits for child process expense 86c07… to finish or 00:59:12 left on a timer, then
    Main_Done · blocked for 3 min", each counterpart linked."""
    from slct_workflows import clock
    from slct_workflows.read import selectors

    now = now or clock.now()
    if view.status != "blocked":
        return waits_html(view.waits_for(now))
    parts = []
    for c in view.cases:
        if c.kind == "timer":
            deadline = c.deadline.isoformat() if c.deadline else ""
            parts.append(format_html('<span class="slct-countdown" data-deadline="{}">{}</span>, then {}',
                                     deadline, _timer_words(c.deadline, now), c.target))
            continue
        role = roles.get(c.channel)
        link = role_link(role, c.channel)
        if role is not None and role.kind == "child" and c.kind == "recv":
            parts.append(format_html("for {} to finish, then {}", link, c.target))
        elif role is not None and role.kind == "question" and c.kind == "recv":
            parts.append(format_html("for an answer to {}, then {}", link, c.target))
        else:
            verb = "to receive on" if c.kind == "recv" else "to send on"
            parts.append(format_html("{} {}, then {}", verb, link, c.target))
    out = format_html("{} waits ", view.name) + mark_safe(" or ".join(parts))
    if since is not None:
        out += format_html(' <span class="slct-blocked-for" title="blocked since {}">· blocked for {}</span>',
                           since.isoformat(timespec="seconds"), selectors.ago((now - since).total_seconds()))
    return mark_safe(out)
