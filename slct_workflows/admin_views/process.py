"""The process page (extra context for the change view), its timeline, cancel, retry and resume."""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect

from slct_workflows import clock, conf, services

from slct_workflows.read import selectors, timeline
from slct_workflows.admin_views.common import (
    PERM_OPERATE_PROCESS,
    PERM_SEND,
    can_view_processes,
    channel_url,
    confirm_page,
    confirmed,
    goroutine_waits_html,
    process_url,
    require,
    service_error,
)
from slct_workflows.errors import SlctError
from slct_workflows.models import GoroutineStatus, ProcessInstance, ProcessStatus

TIMELINE_STEPS = 300  # the newest steps drawn; the history table pages through all of them
HISTORY_ROWS = 200
REFRESH_SECONDS = 5  # a running process's page re-fetches itself this often (while the tab is visible)


def _plain_waits(view, roles, now) -> str:
    """What a goroutine waits for, in words, with its counterparts named (no links: SVG text)."""
    import html

    from django.utils.html import strip_tags

    return " ".join(html.unescape(strip_tags(goroutine_waits_html(view, roles, None, now))).split())


def timeline_svg(proc: ProcessInstance, *, prefix: str = "tl") -> str:
    from slct_workflows.models import Event

    total = Event.objects.filter(process_id=proc.pk).count()
    events = list(Event.objects.filter(process_id=proc.pk).order_by("-seq")[:TIMELINE_STEPS])[::-1]
    views = selectors.goroutines(proc)
    now = clock.now()
    roles = selectors.channel_roles({c.channel for g in views for c in g.cases if c.channel}, {proc.pk: proc.state})
    return timeline.render(
        events,
        process_id=proc.pk,
        related=selectors.related_events(events, proc.pk),
        statuses={g.name: g.status for g in views},
        waiting={g.name: _plain_waits(g, roles, now) for g in views if g.status in ("blocked", "runnable", "paused")},
        prefix=prefix,
        omitted=max(0, total - len(events)),
        process_url=process_url,
    )


def _involved(proc: ProcessInstance) -> list[tuple[Any, str, str]]:
    """(channel, url, what it is) for the channels a process touches: "result of child …", the
    question it asks, "state.reply_to" for a generated name, "" for a plain named channel."""
    chans = selectors.process_channels(proc)
    roles = selectors.channel_roles({c.name for c in chans}, {proc.pk: proc.state})
    out = []
    for c in chans:
        role = roles.get(c.name)
        if c.name == proc.result_channel:
            label = "the result for its parent"
        elif role is None or (role.kind == "channel" and not role.field):
            label = ""
        elif role.kind == "child":
            label = f"result of {role.words}"
        elif role.field:
            label = f"state.{role.field}"
        else:
            label = role.words
        out.append((c, channel_url(c.name), label))
    return out


def page_context(request, proc: ProcessInstance) -> dict[str, Any]:
    """What the process page shows beyond its fields."""
    from slct_workflows.models import Event, PendingCase

    now = clock.now()
    user = request.user
    goroutines = []
    views = selectors.goroutines(proc)
    roles = selectors.channel_roles({c.channel for g in views for c in g.cases if c.channel}, {proc.pk: proc.state})
    since = selectors.blocked_since(proc)
    for g in views:
        goroutines.append({
            "view": g,
            "waits": goroutine_waits_html(g, roles, since.get(g.id), now),
            "recv_channels": [  # plain channels only: a child's result or a question is answered elsewhere
                (roles[name].short if name in roles else name, channel_url(name, "send"))
                for name in sorted({c.channel for c in g.cases if c.kind == "recv" and c.channel})
                if name not in roles or roles[name].kind == "channel"
            ],
        })
    history_qs = Event.objects.filter(process_id=proc.pk).order_by("-seq")
    operate = user.has_perm(PERM_OPERATE_PROCESS)
    paused = [g["view"] for g in goroutines if g["view"].status == GoroutineStatus.PAUSED]
    children = list(
        ProcessInstance.objects.filter(parent_id=proc.pk).order_by("created_at", "id")
        .only("id", "definition", "version", "status", "created_at", "result_channel")[:200]
    )
    waiting_parent = None
    if proc.parent_id and proc.result_channel:
        waiting_parent = (
            PendingCase.objects.filter(channel_id=proc.result_channel, kind="recv", goroutine__isnull=False)
            .select_related("goroutine").first()
        )
    return {
        "slct_goroutines": goroutines,
        "slct_children": [(c, process_url(c.pk)) for c in children],
        "slct_parent_url": process_url(proc.parent_id) if proc.parent_id else "",
        "slct_parent_waiting": waiting_parent.goroutine.name if waiting_parent else "",
        "slct_live": proc.status == ProcessStatus.RUNNING,
        "slct_refresh_seconds": REFRESH_SECONDS,
        "slct_channels": _involved(proc),
        "slct_timeline": timeline_svg(proc),
        "slct_timeline_url": process_url(proc.pk, "timeline"),
        "slct_history": [(e, timeline.short_json(e.value, 120) if e.value is not None else "")
                         for e in history_qs[:HISTORY_ROWS]],
        "slct_history_total": history_qs.count(),
        "slct_can_cancel": operate and proc.status in (ProcessStatus.RUNNING, ProcessStatus.FAILED),
        "slct_can_retry": operate and proc.status == ProcessStatus.FAILED,
        "slct_paused": paused,
        "slct_can_resume": operate and bool(paused) and proc.status == ProcessStatus.RUNNING,
        "slct_resume_url": process_url(proc.pk, "resume"),
        "slct_can_send": user.has_perm(PERM_SEND),
        "slct_cancel_url": process_url(proc.pk, "cancel"),
        "slct_retry_url": process_url(proc.pk, "retry"),
        "slct_state_url": process_url(proc.pk, "state"),
        "show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False,
    }


def timeline_view(model_admin, request, object_id: str) -> HttpResponse:
    if not can_view_processes(request.user):
        raise PermissionDenied
    proc = get_object_or_404(ProcessInstance, pk=unquote(object_id))
    response = HttpResponse(timeline_svg(proc), content_type="image/svg+xml; charset=utf-8")
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    return response


def cancel_view(model_admin, request, object_id: str) -> HttpResponse:
    require(request, PERM_OPERATE_PROCESS)
    proc = get_object_or_404(ProcessInstance, pk=unquote(object_id))
    if confirmed(request):
        reason = request.POST.get("reason", "").strip()[:500]
        try:
            services.cancel_process(proc.pk, reason=reason)
        except SlctError as exc:
            service_error(request, exc, f"cancel process {proc.pk}")
        else:
            messages.success(request, f"Process {proc.pk} was cancelled; its goroutines stopped.")
        return redirect(process_url(proc.pk))
    live = [g for g in selectors.goroutines(proc) if g.status in ("runnable", "blocked", "failed", "paused")]
    return confirm_page(
        model_admin, request, obj=proc, danger=True, reason_field=True,
        title=f"Cancel process {proc.pk}?",
        question=(
            f"Cancel the {proc.definition} process {proc.pk} (now {proc.status})? Every goroutine stops, "
            "every pending case is removed and a parent waiting on it is woken. This cannot be undone."
        ),
        verb="Yes, cancel the process",
        back_url=process_url(proc.pk),
        details=[(g.name, g.waits_for()) for g in live],
    )


def retry_view(model_admin, request, object_id: str) -> HttpResponse:
    require(request, PERM_OPERATE_PROCESS)
    proc = get_object_or_404(ProcessInstance, pk=unquote(object_id))
    if confirmed(request):
        try:
            services.retry_process(proc.pk)
        except SlctError as exc:
            service_error(request, exc, f"retry process {proc.pk}")
        else:
            messages.success(request, f"Process {proc.pk} is running again; its failed goroutines will re-run their step.")
        return redirect(process_url(proc.pk))
    failed = [g for g in selectors.goroutines(proc) if g.status == "failed"]
    return confirm_page(
        model_admin, request, obj=proc,
        title=f"Retry process {proc.pk}?",
        question=(
            f"Put the {proc.definition} process {proc.pk} (now {proc.status}) back to work? "
            "Its failed goroutines run their failed step again."
        ),
        verb="Yes, retry",
        back_url=process_url(proc.pk),
        details=[(g.name, f"{g.next_method}: {g.last_error}") for g in failed]
        + ([("error", proc.error.splitlines()[0])] if proc.error else []),
    )


def resume_view(model_admin, request, object_id: str) -> HttpResponse:
    require(request, PERM_OPERATE_PROCESS)
    proc = get_object_or_404(ProcessInstance, pk=unquote(object_id))
    if confirmed(request):
        try:
            services.resume_process(proc.pk)
        except SlctError as exc:
            service_error(request, exc, f"resume process {proc.pk}")
        else:
            messages.success(
                request, f"Process {proc.pk} resumed: its paused goroutines run again. If the cause is still "
                         "there, the runaway guard pauses them again."
            )
        return redirect(process_url(proc.pk))
    paused = [g for g in selectors.goroutines(proc) if g.status == GoroutineStatus.PAUSED]
    return confirm_page(
        model_admin, request, obj=proc,
        title=f"Resume process {proc.pk}?",
        question=(
            f"Resume the goroutines of the {proc.definition} process {proc.pk} that the runaway guard paused? "
            "Each runs the step its last select fired and is counted afresh: if what made it loop (a closed "
            "channel, a default() or a timer of zero) is still there, it is paused again after "
            f"{conf.runaway_steps()} steps in a row. Fix the cause first (or cancel the process)."
        ),
        verb="Yes, resume",
        back_url=process_url(proc.pk),
        details=[(g.name, g.paused_reason or "paused") for g in paused] or [("", "no goroutine is paused")],
    )


def bulk_action(model_admin, request, queryset, *, verb: str, past: str, func, allowed: str):
    """Changelist action (cancel/retry selected): a confirmation page, then the service per process."""
    if request.POST.get("confirm") == "yes":
        done, failed = 0, 0
        for pid in queryset.values_list("pk", flat=True):
            try:
                func(pid)
                done += 1
            except SlctError as exc:
                failed += 1
                service_error(request, exc, f"{verb} process {pid}")
        if done:
            messages.success(request, f"{verb.capitalize()}: {done} process(es).")
        return None
    procs = list(queryset[:200])
    from django.contrib.admin import helpers

    return confirm_page(
        model_admin, request, danger=verb == "cancel",
        title=f"{verb.capitalize()} {len(procs)} process(es)?",
        question=f"{verb.capitalize()} these processes? Only {allowed} processes can be {past}; "
                 "any other is reported as an error and left alone.",
        verb=f"Yes, {verb}",
        back_url=request.get_full_path(),
        details=[(p.pk, f"{p.definition} · {p.status}") for p in procs],
        hidden={
            "action": request.POST.get("action", ""),
            helpers.ACTION_CHECKBOX_NAME: [str(p.pk) for p in procs],
        },
    )
