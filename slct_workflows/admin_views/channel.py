"""The channel page (extra context for the change view), send a value, close the channel."""
from __future__ import annotations

import json
import re
import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse

from slct_workflows import services

from slct_workflows.read import selectors
from slct_workflows.access import Sender
from slct_workflows.admin_views.common import (
    PERM_CLOSE,
    PERM_SEND,
    channel_url,
    confirm_page,
    confirmed,
    pretty_json,
    process_url,
    require,
    service_error,
)
from slct_workflows.errors import SlctError
from slct_workflows.models import Channel, SendStatus

KEY_RE = re.compile(r"^admin-[0-9a-f]{32}$")


def new_key() -> str:
    return f"admin-{uuid.uuid4().hex}"


class SendForm(forms.Form):
    value = forms.CharField(
        label="Value (JSON)", strip=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60, "class": "vLargeTextField", "spellcheck": "false"}),
        help_text='JSON, e.g. <code>"yes"</code>, <code>42</code>, <code>{"approved": true}</code>, <code>null</code>. '
                  "Text must be quoted.",
    )
    wait = forms.BooleanField(
        required=False, initial=True,
        label="If nobody is receiving right now, leave the value waiting for a receiver (unticked: refuse)",
    )
    key = forms.CharField(widget=forms.HiddenInput)

    def clean_value(self) -> str:
        raw = self.cleaned_data["value"]
        try:
            self.parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"This is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).")
        return raw

    def clean_key(self) -> str:
        key = self.cleaned_data["key"]
        if not KEY_RE.match(key):
            raise forms.ValidationError("The form's idempotency key is malformed; reload the page.")
        return key


def send_form(initial_value: str = "") -> SendForm:
    return SendForm(initial={"value": initial_value, "wait": True, "key": new_key()})


def page_context(request, chan: Channel) -> dict[str, Any]:
    view = selectors.channel(chan)
    deliveries = selectors.recent_deliveries(chan, limit=50)
    return {
        "slct_chan_role": _role(chan, view),
        "slct_chan": view,
        "slct_buffer": [pretty_json(v) for v in view.buffer],
        "slct_receivers": [_waiter(w) for w in view.receivers],
        "slct_senders": [_waiter(w) for w in view.senders],
        "slct_deliveries": [_delivery(e) for e in deliveries],
        "slct_can_send": request.user.has_perm(PERM_SEND) and not chan.closed,
        "slct_can_close": request.user.has_perm(PERM_CLOSE) and not chan.closed,
        "slct_send_form": send_form(),
        "slct_send_url": channel_url(chan.name, "send"),
        "slct_close_url": channel_url(chan.name, "close"),
        "show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False,
    }


def _role(chan: Channel, view) -> dict[str, Any] | None:
    """What the channel is, when it is more than a name: a child's result channel (and its parent),
    a Slack question's reply channel, a state field of the processes that wait on it."""
    from slct_workflows.models import ProcessInstance

    pids = {w["process"] for w in view.receivers + view.senders if "process" in w}
    states = dict(ProcessInstance.objects.filter(pk__in=pids).values_list("pk", "state"))
    role = selectors.channel_roles({chan.name}, states).get(chan.name)
    if role is None or (role.kind == "channel" and not role.field):
        return None
    if role.kind == "child":
        child = ProcessInstance.objects.filter(pk=role.process_id).only("id", "parent_id", "definition").first()
        return {"words": f"the result of {role.words}", "url": role.url,
                "parent_url": process_url(child.parent_id) if child and child.parent_id else "",
                "parent": child.parent_id if child else ""}
    if role.kind == "question":
        return {"words": f"the reply channel of the {role.words}", "url": role.url}
    return {"words": f"held in the state field “{role.field}” of the process(es) waiting on it", "url": ""}


def _waiter(w: dict[str, Any]) -> dict[str, Any]:
    out = dict(w)
    if "process" in w:
        out["url"] = process_url(w["process"])
    if "value" in w:
        out["value_json"] = json.dumps(w["value"], ensure_ascii=False)
    return out


def _delivery(e) -> dict[str, Any]:
    detail = e.detail if isinstance(e.detail, dict) else {}
    src = e.source if isinstance(e.source, dict) else {}
    if e.kind == "send":
        what = f"external send: {detail.get('status', '')}" + (f" to {detail['to']}" if detail.get("to") else "")
    elif e.kind == "close":
        what = "channel closed"
    else:
        what = f"{e.goroutine}.{e.method} ran after {e.case}"
    if src.get("external"):
        sender = f"outside ({src['external']})"
    elif src.get("process"):
        sender = f"{src['process']}/{src.get('goroutine', '')}"
    else:
        sender = ""
    return {
        "event": e, "what": what, "sender": sender, "value_json": json.dumps(e.value, ensure_ascii=False),
        "url": process_url(e.process_id) if e.process_id else "",
    }


def _form_page(model_admin, request, chan: Channel, form: SendForm, status: int = 200) -> TemplateResponse:
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Send a value into channel {chan.name}",
        "opts": model_admin.model._meta,
        "object": chan,
        "chan": selectors.channel(chan),
        "form": form,
        "back_url": channel_url(chan.name),
        "send_url": channel_url(chan.name, "send"),
    }
    return TemplateResponse(request, "admin/slct_workflows/channel/send.html", context, status=status)


def send_view(model_admin, request, object_id: str) -> HttpResponse:
    require(request, PERM_SEND)
    chan = get_object_or_404(Channel, pk=unquote(object_id))
    if request.method != "POST":
        return _form_page(model_admin, request, chan, send_form())
    form = SendForm(request.POST)
    if not form.is_valid():
        return _form_page(model_admin, request, chan, form, status=400)
    value, key, wait = form.parsed, form.cleaned_data["key"], form.cleaned_data["wait"]
    if not confirmed(request):
        view = selectors.channel(chan)
        return confirm_page(
            model_admin, request, obj=chan,
            title=f"Send into channel {chan.name}?",
            question=f"Send this value into channel “{chan.name}”?",
            verb="Yes, send it",
            back_url=channel_url(chan.name),
            details=[
                ("value", pretty_json(value)),
                ("receivers waiting now", len(view.receivers)),
                ("buffer", f"{len(view.buffer)} of {chan.capacity}"),
                ("if nobody receives", "the value waits for a receiver" if wait else "the send is refused"),
            ],
            hidden={"value": form.cleaned_data["value"], "key": key, "wait": "on" if wait else ""},
        )
    try:
        result = services.send(chan.name, value, key, wait=wait, sender=Sender.admin(request.user))
    except SlctError as exc:
        service_error(request, exc, f"send into channel {chan.name}")
        return redirect(channel_url(chan.name))
    shown = json.dumps(value, ensure_ascii=False)
    if len(shown) > 80:
        shown = shown[:79] + "…"
    if result.repeated:
        messages.warning(
            request,
            f"This form was already submitted (key {key}): the value was sent once, not again. "
            f"Status: {SendStatus(result.status).label}.",
        )
    elif result.status == SendStatus.DELIVERED:
        to = result.send.delivered_to if result.send else ""
        messages.success(request, f"Sent {shown} into {chan.name}: delivered to {to or 'a waiting receiver'}.")
    elif result.status == SendStatus.BUFFERED:
        messages.success(request, f"Sent {shown} into {chan.name}: buffered until a receiver takes it.")
    else:
        messages.success(request, f"Sent {shown} into {chan.name}: {SendStatus(result.status).label.lower()}.")
    return redirect(channel_url(chan.name))


def close_view(model_admin, request, object_id: str) -> HttpResponse:
    require(request, PERM_CLOSE)
    chan = get_object_or_404(Channel, pk=unquote(object_id))
    if confirmed(request):
        try:
            changed = services.close_channel(chan.name, sender=Sender.admin(request.user))
        except SlctError as exc:
            service_error(request, exc, f"close channel {chan.name}")
        else:
            if changed:
                messages.success(request, f"Channel {chan.name} is closed; goroutines blocked on it were woken.")
            else:
                messages.info(request, f"Channel {chan.name} was already closed; nothing changed.")
        return redirect(channel_url(chan.name))
    view = selectors.channel(chan)
    who = [
        (f"{w.get('process', 'external')}/{w.get('goroutine', w.get('external_send', ''))}", f"blocked {kind}")
        for kind, ws in (("receiving", view.receivers), ("sending", view.senders)) for w in ws
    ]
    return confirm_page(
        model_admin, request, obj=chan, danger=True,
        title=f"Close channel {chan.name}?",
        question=(
            f"Close channel “{chan.name}”? Receivers get the buffered values, then “closed”; "
            "blocked senders fire with “closed” (their values are not delivered). This cannot be undone."
        ),
        verb="Yes, close the channel",
        back_url=channel_url(chan.name),
        details=[("buffered values", len(view.buffer)), *who],
    )
