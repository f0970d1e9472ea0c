"""The operator's dashboard and the recovery sweep."""
from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse

from slct_workflows import clock, conf, services

from slct_workflows.read import selectors
from slct_workflows.admin_views.common import (
    PERM_OPERATE_PROCESS,
    can_view_processes,
    channel_url,
    confirm_page,
    confirmed,
    process_url,
    require,
)
from slct_workflows.errors import SlctError
from slct_workflows.models import ProcessStatus

REDIS_TIMEOUT = 3.0


def queue_info(timeout: float = REDIS_TIMEOUT) -> dict[str, Any]:
    """The RQ queue's length, or why it could not be read. Never raises, never hangs."""
    result: dict[str, Any] = {"ok": False, "name": settings.SLCT_QUEUE, "error": "timed out talking to Redis"}

    def read() -> None:
        try:
            import django_rq

            queue = django_rq.get_queue(settings.SLCT_QUEUE)
            info = {"count": queue.count, "scheduled": queue.scheduled_job_registry.count,
                    "failed": queue.failed_job_registry.count}
            result.update(ok=True, error="", **info)
        except Exception as exc:  # Redis down, misconfigured, ...: say so on the page
            result.update(ok=False, error=f"{type(exc).__name__}: {exc}")

    t = threading.Thread(target=read, daemon=True, name="slct-dashboard-redis")
    t.start()
    t.join(timeout)
    return dict(result)


def _rq_url() -> str:
    try:
        return reverse("rq_home")
    except NoReverseMatch:
        return "/django-rq/"


def dashboard_view(model_admin, request) -> HttpResponse:
    if not can_view_processes(request.user):
        raise PermissionDenied
    now = clock.now()
    data = selectors.dashboard(now)
    changelist = reverse("admin:slct_workflows_processinstance_changelist")
    statuses = [s for s, _ in ProcessStatus.choices]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "SLCT workflows dashboard",
        "opts": model_admin.model._meta,
        "now": now,
        "data": data,
        "statuses": statuses,
        "rows": [
            {"definition": r["definition"], "total": r["total"],
             "cells": [(r.get(s, 0), f"{changelist}?definition={r['definition']}&status__exact={s}") for s in statuses]}
            for r in data.by_definition
        ],
        "totals": [(data.status_totals.get(s, 0), f"{changelist}?status__exact={s}") for s in statuses],
        "overdue": [
            {"case": c, "late": _ago(now - c.deadline), "url": process_url(c.goroutine.process_id)}
            for c in data.overdue_timers
        ],
        "failed": [(p, process_url(p.pk)) for p in data.failed],
        "paused": [(g, process_url(g.process_id), process_url(g.process_id, "resume")) for g in data.paused],
        "can_resume": request.user.has_perm(PERM_OPERATE_PROCESS),
        "runaway_steps": conf.runaway_steps(),
        "waiting": [(w, channel_url(w["channel"])) for w in data.waiting_by_channel],
        "oldest_runnable_age": _ago(now - data.oldest_runnable) if data.oldest_runnable else "",
        "queue": queue_info(),
        "rq_url": _rq_url(),
        "can_sweep": request.user.has_perm(PERM_OPERATE_PROCESS),
        "sweep_url": reverse("admin:slct_workflows_processinstance_sweep"),
        "changelist_url": changelist,
    }
    return TemplateResponse(request, "admin/slct_workflows/dashboard.html", context)


def _ago(delta: timedelta) -> str:
    s = int(delta.total_seconds())
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def sweep_view(model_admin, request) -> HttpResponse:
    require(request, PERM_OPERATE_PROCESS)
    back = reverse("admin:slct_workflows_processinstance_dashboard")
    if confirmed(request):
        try:
            report = services.sweep()
        except SlctError as exc:  # QueueUnavailable when Redis is unreachable
            messages.error(request, f"Could not run the recovery sweep: {exc}")
        else:
            messages.success(
                request,
                f"Recovery sweep done: re-enqueued {report.runnable} runnable goroutine(s), "
                f"{report.timers} due timer(s) and {report.outbox} outbox job(s).",
            )
        return redirect(back)
    now = clock.now()
    grace = timedelta(seconds=conf.sweep_grace())
    data = selectors.dashboard(now, limit=0)
    finds = services.sweep_finds(now, grace)  # what the sweep would re-enqueue: its own queries
    idle, outbox = finds.runnable.count(), finds.outbox.count()
    return confirm_page(
        model_admin, request,
        title="Run the recovery sweep?",
        question=(
            "Re-enqueue what Redis may have lost: runnable goroutines idle for more than "
            f"{grace.total_seconds():g}s, blocked goroutines whose timer is due, and pending outbox jobs. "
            "It is safe to run at any time: work that was already done is not done again."
        ),
        verb="Yes, run the sweep",
        back_url=back,
        details=[
            ("runnable goroutines idle past the grace period", idle),
            ("overdue timers", data.overdue_count),
            ("pending outbox jobs", outbox),
        ],
    )
