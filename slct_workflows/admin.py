"""The admin: every model inspectable, nothing editable by a stray form field.

Rows change only through the service layer (operator actions with a confirmation step, in
slct_workflows.admin_views), so every ModelAdmin here is read-only: the change page is a view page.
Permissions for the actions:
  cancel / retry / resume a process, run the sweep -> slct_workflows.change_processinstance
  send a value into a channel                       -> slct_workflows.add_externalsend
  close a channel                                   -> slct_workflows.change_channel
"""
from __future__ import annotations

import re
from functools import partial

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, OuterRef, Q, Subquery
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from slct_workflows import clock, services
from slct_workflows.access import effective_policy
from slct_workflows.runtime import consistent_read
from slct_workflows.admin_views import channel as channel_views
from slct_workflows.admin_views import dashboard as dashboard_views
from slct_workflows.admin_views import process as process_views
from slct_workflows.admin_views import state as state_views
from slct_workflows.admin_views.common import (
    PERM_OPERATE_PROCESS, channel_link, json_block, process_link, process_url,
)
from slct_workflows.models import (
    BufferedValue, Channel, Event, ExternalSend, Goroutine, Outbox, PendingCase, ProcessInstance,
)

# The admin index links to the dashboard (the default admin.site is kept).
if admin.site.index_template is None:
    admin.site.index_template = "admin/slct_workflows/index.html"


def _preview(value, limit: int = 60) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable and searchable; no add, change or delete through forms."""

    list_per_page = 50

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def history_view(self, request, object_id, extra_context=None):
        """Django's change log is empty here (nothing is changed through forms): no page for it."""
        from django.contrib.admin.utils import unquote

        obj = self.get_object(request, unquote(object_id))
        if obj is None or not self.has_view_or_change_permission(request, obj):
            return super().history_view(request, object_id, extra_context)
        info = self.opts.app_label, self.opts.model_name
        return HttpResponseRedirect(reverse(f"admin:{info[0]}_{info[1]}_change", args=[object_id]))

    def _mount(self, route: str, view, name: str):
        info = self.opts.app_label, self.opts.model_name
        return path(route, self.admin_site.admin_view(partial(view, self)), name=f"{info[0]}_{info[1]}_{name}")


# -- processes -----------------------------------------------------------------------------------

class PausedFilter(admin.SimpleListFilter):
    title = "runaway guard"
    parameter_name = "paused"

    def lookups(self, request, model_admin):
        return (("yes", "has goroutines paused by the runaway guard"),)

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(pk__in=Goroutine.objects.filter(status="paused").values("process_id"))
        return queryset


class WaitsForFilter(admin.SimpleListFilter):
    title = "waits for"
    parameter_name = "waits_for"

    def lookups(self, request, model_admin):
        return (("channel", "a channel"), ("child", "a child process"), ("question", "a Slack question"),
                ("timer", "a timer"))

    def queryset(self, request, queryset):
        from slct_workflows.read import selectors

        value = self.value()
        if not value:
            return queryset
        blocked = PendingCase.objects.filter(goroutine__status="blocked")
        children = ProcessInstance.objects.exclude(result_channel="").values("result_channel")
        questions = selectors.described_channel_names("question")
        if value == "timer":
            cases = blocked.filter(kind="timer")
        elif value == "child":
            cases = blocked.filter(kind="recv", channel_id__in=children)
        elif value == "question":
            if questions is None:
                return queryset.none()
            cases = blocked.filter(kind="recv", channel_id__in=questions)
        elif value == "channel":
            cases = blocked.filter(kind__in=["recv", "send"]).exclude(channel_id__in=children)
            if questions is not None:
                cases = cases.exclude(channel_id__in=questions)
        else:
            return queryset
        return queryset.filter(pk__in=cases.values("goroutine__process_id"))


class ProcessChangeList(ChangeList):
    """Computes what the page's running processes wait for in a few queries (not one per row)."""

    def get_results(self, request):
        from slct_workflows.read import selectors

        super().get_results(request)
        self.result_list = list(self.result_list)
        summary = selectors.waiting_summary(self.result_list)
        for obj in self.result_list:
            obj.slct_waiting = summary.get(obj.pk)


@admin.register(ProcessInstance)
class ProcessInstanceAdmin(ReadOnlyAdmin):
    list_display = ("id_col", "definition", "version_col", "status_badge", "waits_col", "blocked_col", "error_col",
                    "parent_col", "live_goroutines", "created_col")
    list_display_links = ("id_col",)
    list_filter = ("status", WaitsForFilter, PausedFilter, "definition", "version", "created_at")
    search_fields = ("id", "definition", "error")
    date_hierarchy = "created_at"
    fields = (
        "id", "definition", "version", "status_badge", "parent_link", "result_channel", "step_count",
        "created_at", "updated_at", "finished_at", "input_json", "output_json", "error_block", "state_json",
    )
    readonly_fields = fields
    change_form_template = "admin/slct_workflows/processinstance/change_form.html"
    change_list_template = "admin/slct_workflows/processinstance/change_list.html"
    actions = ("cancel_selected", "retry_selected", "resume_selected")

    def get_queryset(self, request):
        oldest_block = (
            PendingCase.objects.filter(goroutine__process_id=OuterRef("pk"), goroutine__status="blocked")
            .order_by("created_at").values("created_at")[:1]
        )
        return super().get_queryset(request).annotate(
            n_live=Count("goroutines", filter=Q(goroutines__status__in=["runnable", "blocked", "failed", "paused"])),
            n_paused=Count("goroutines", filter=Q(goroutines__status="paused")),
            blocked_since=Subquery(oldest_block),
        )

    def get_changelist(self, request, **kwargs):
        return ProcessChangeList

    @admin.display(description="id", ordering="id")
    def id_col(self, obj):
        from slct_workflows.read.selectors import short_id

        return format_html('<span title="{}">{}</span>', obj.pk, short_id(obj.pk, 10))

    @admin.display(description="created", ordering="created_at")
    def created_col(self, obj):
        from django.utils import timezone

        local = timezone.localtime(obj.created_at)
        return format_html('<span title="{}">{}<br>{}</span>', local.isoformat(timespec="seconds"),
                           local.strftime("%b %d"), local.strftime("%H:%M"))

    @admin.display(description="version", ordering="version")
    def version_col(self, obj):
        return obj.version or "—"

    @admin.display(description="waits for")
    def waits_col(self, obj):
        summary = getattr(obj, "slct_waiting", None)
        if obj.status != "running" or not summary or not summary["items"]:
            return "—"
        from slct_workflows.admin_views.common import channel_url

        def one(it):
            url = it["url"] or (channel_url(it["channel"]) if it["channel"] else "")
            if url:
                return format_html('<a href="{}" class="slct-wait-{}">{}</a>', url, it["kind"], it["short"])
            return format_html('<span class="slct-wait-{}">{}</span>', it["kind"], it["short"])

        return format_html('<span class="slct-waits-short">{}</span>',
                           format_html_join(", ", "{}", ((one(it),) for it in summary["items"][:4])))

    @admin.display(description="blocked", ordering="blocked_since")
    def blocked_col(self, obj):
        since = getattr(obj, "blocked_since", None)
        if since is None or obj.status != "running":
            return "—"
        from slct_workflows.read.selectors import ago

        return format_html('<span title="blocked since {}">{}</span>', since.isoformat(timespec="seconds"),
                           ago((clock.now() - since).total_seconds()))

    @admin.display(description="error", ordering="error")
    def error_col(self, obj):
        if not obj.error:
            return "—"
        first = obj.error.strip().splitlines()[0]
        # "goroutine Main, method Main_Start: X" reads "Main_Start: X" here (the goroutine is in the name).
        m = re.match(r"goroutine \S+, method (\S+): (.*)$", first)
        shown = f"{m.group(1)}: {m.group(2)}" if m else first
        short = shown if len(shown) <= 90 else shown[:89] + "…"
        return format_html('<span class="slct-error-line" title="{}">{}</span>', first, short)

    @admin.display(description="parent", ordering="parent_id")
    def parent_col(self, obj):
        if not obj.parent_id:
            return "—"
        from slct_workflows.read.selectors import short_id

        return format_html('<a href="{}" title="{}" class="slct-parent-link">{}</a>', process_url(obj.parent_id),
                           obj.parent_id, short_id(obj.parent_id, 10))

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        colors = {"running": "#2f6f9f", "done": "#2e7d32", "failed": "#c62828", "cancelled": "#6b6b6b"}
        paused = getattr(obj, "n_paused", None)
        if paused is None and obj.status == "running":
            paused = obj.goroutines.filter(status="paused").count()
        if paused and obj.status == "running":
            # Running, but a goroutine is stopped by the runaway guard: not "fine".
            return format_html(
                '<span class="slct-status" style="color:{};font-weight:bold">{}</span> '
                '<span class="slct-badge paused" title="paused by the runaway guard">{} paused</span>',
                colors["running"], obj.get_status_display(), paused,
            )
        return format_html(
            '<span class="slct-status" style="color:{};font-weight:bold">{}</span>',
            colors.get(obj.status, "#333"), obj.get_status_display(),
        )

    @admin.display(description="live", ordering="n_live")
    def live_goroutines(self, obj):
        return getattr(obj, "n_live", None)

    @admin.display(description="parent")
    def parent_link(self, obj):
        return process_link(obj.parent_id)

    @admin.display(description="input")
    def input_json(self, obj):
        return json_block(obj.input)

    @admin.display(description="output")
    def output_json(self, obj):
        return json_block(obj.output)

    @admin.display(description="state")
    def state_json(self, obj):
        return json_block(obj.state)

    @admin.display(description="error")
    def error_block(self, obj):
        if not obj.error:
            return "—"
        return format_html('<pre class="slct-traceback">{}</pre>', obj.error)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        from django.contrib.admin.utils import unquote

        if request.method != "GET":
            return super().change_view(request, object_id, form_url, extra_context=extra_context)
        # The state, the goroutines and what each waits for, read from one snapshot and rendered
        # inside it (a page rendered after the block would read the history again, later).
        with consistent_read():
            proc = self.get_object(request, unquote(object_id))
            extra = dict(extra_context or {})
            if proc is not None and self.has_view_or_change_permission(request, proc):
                extra.update(process_views.page_context(request, proc))
            response = super().change_view(request, object_id, form_url, extra_context=extra)
            if hasattr(response, "render"):
                response.render()
            return response

    def changelist_view(self, request, extra_context=None):
        from django.urls import reverse

        extra = dict(extra_context or {})
        extra["slct_dashboard_url"] = reverse("admin:slct_workflows_processinstance_dashboard")
        return super().changelist_view(request, extra_context=extra)

    def has_operate_permission(self, request) -> bool:
        return request.user.has_perm(PERM_OPERATE_PROCESS)

    @admin.action(description="Cancel selected processes…", permissions=["operate"])
    def cancel_selected(self, request, queryset):
        return process_views.bulk_action(
            self, request, queryset, verb="cancel", past="cancelled", allowed="running or failed",
            func=lambda pid: services.cancel_process(pid, reason="bulk cancel from the admin"),
        )

    @admin.action(description="Retry selected failed processes…", permissions=["operate"])
    def retry_selected(self, request, queryset):
        return process_views.bulk_action(
            self, request, queryset, verb="retry", past="retried", allowed="failed", func=services.retry_process,
        )

    @admin.action(description="Resume paused goroutines of selected processes…", permissions=["operate"])
    def resume_selected(self, request, queryset):
        return process_views.bulk_action(
            self, request, queryset, verb="resume", past="resumed", allowed="running",
            func=services.resume_process,
        )

    def get_urls(self):
        return [
            self._mount("dashboard/", dashboard_views.dashboard_view, "dashboard"),
            self._mount("sweep/", dashboard_views.sweep_view, "sweep"),
            self._mount("<path:object_id>/cancel/", process_views.cancel_view, "cancel"),
            self._mount("<path:object_id>/retry/", process_views.retry_view, "retry"),
            self._mount("<path:object_id>/resume/", process_views.resume_view, "resume"),
            self._mount("<path:object_id>/state/", state_views.state_view, "state"),
            self._mount("<path:object_id>/timeline.svg", process_views.timeline_view, "timeline"),
            *super().get_urls(),
        ]


@admin.register(Goroutine)
class GoroutineAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "process_col", "name", "status", "next_method", "waiting_on", "attempts", "updated_at")
    list_filter = ("status", "process__definition", "process__status")
    search_fields = ("process__id", "name", "next_method", "last_error")
    list_select_related = ("process",)
    fields = (
        "process_col", "name", "status", "waits_for", "next_method", "next_case", "next_value_json", "wait_seq",
        "attempts", "retry_at", "last_error", "paused_reason", "hot_steps", "runnable_since", "created_at", "updated_at",
    )
    readonly_fields = fields

    @admin.display(description="process", ordering="process_id")
    def process_col(self, obj):
        return process_link(obj.process_id)

    @admin.display(description="waits on")
    def waiting_on(self, obj):
        cases = list(obj.pending.all())
        if not cases:
            return "—"
        return ", ".join("timer" if c.kind == "timer" else f"{c.kind} {c.channel_id}" for c in cases)

    @admin.display(description="waits for")
    def waits_for(self, obj):
        from slct_workflows.read import selectors
        from slct_workflows.admin_views.common import goroutine_waits_html

        view = next((g for g in selectors.goroutines(obj.process_id) if g.id == obj.id), None)
        if view is None:
            return "—"
        roles = selectors.channel_roles({c.channel for c in view.cases if c.channel},
                                        {obj.process_id: obj.process.state})
        return goroutine_waits_html(view, roles, selectors.blocked_since(obj.process_id).get(obj.id))

    @admin.display(description="next value")
    def next_value_json(self, obj):
        return json_block(obj.next_value)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("pending")


@admin.register(Channel)
class ChannelAdmin(ReadOnlyAdmin):
    list_display = ("name", "capacity", "open_or_closed", "send_policy", "owner", "buffered", "receivers", "senders",
                    "created_at")
    list_filter = ("closed", "policy", "capacity")
    search_fields = ("name", "owner")
    fields = ("name", "capacity", "open_or_closed", "owner", "send_policy", "created_at", "closed_at")
    readonly_fields = fields
    change_form_template = "admin/slct_workflows/channel/change_form.html"

    @admin.display(description="open / closed", ordering="closed")
    def open_or_closed(self, obj):
        # Words, not Django's boolean icons: a green tick read as "fine" on a closed channel.
        if obj.closed:
            return mark_safe('<span class="slct-badge cancelled">closed</span>')
        return mark_safe('<span class="slct-badge running">open</span>')

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            n_buffer=Count("buffer", distinct=True),
            n_recv=Count("pending", filter=Q(pending__kind="recv"), distinct=True),
            n_send=Count("pending", filter=Q(pending__kind="send"), distinct=True),
        )

    @admin.display(description="who may send from outside", ordering="policy")
    def send_policy(self, obj):
        return effective_policy(obj).describe()  # a workflow's declaration wins over the row

    @admin.display(description="buffered", ordering="n_buffer")
    def buffered(self, obj):
        return obj.n_buffer

    @admin.display(description="receivers waiting", ordering="n_recv")
    def receivers(self, obj):
        return obj.n_recv

    @admin.display(description="senders waiting", ordering="n_send")
    def senders(self, obj):
        return obj.n_send

    def change_view(self, request, object_id, form_url="", extra_context=None):
        from django.contrib.admin.utils import unquote

        chan = self.get_object(request, unquote(object_id))
        extra = dict(extra_context or {})
        if chan is not None and self.has_view_or_change_permission(request, chan):
            extra.update(channel_views.page_context(request, chan))
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def get_urls(self):
        return [
            self._mount("<path:object_id>/send/", channel_views.send_view, "send"),
            self._mount("<path:object_id>/close/", channel_views.close_view, "close"),
            *super().get_urls(),
        ]


@admin.register(BufferedValue)
class BufferedValueAdmin(ReadOnlyAdmin):
    list_display = ("id", "channel_col", "seq", "value_preview", "sender", "created_at")
    search_fields = ("channel__name",)
    list_filter = ("channel__closed",)
    fields = ("channel_col", "seq", "value_json", "source", "created_at")
    readonly_fields = fields
    ordering = ("channel", "seq")

    @admin.display(description="channel", ordering="channel_id")
    def channel_col(self, obj):
        return channel_link(obj.channel_id)

    @admin.display(description="value")
    def value_preview(self, obj):
        return _preview(obj.value)

    @admin.display(description="value")
    def value_json(self, obj):
        return json_block(obj.value)

    @admin.display(description="sent by")
    def sender(self, obj):
        src = obj.source or {}
        if src.get("process"):
            return format_html('<a href="{}">{}/{}</a>', process_url(src["process"]), src["process"],
                               src.get("goroutine", ""))
        return f"outside ({src['external']})" if src.get("external") else "—"


class OverdueFilter(admin.SimpleListFilter):
    title = "timer"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return (("yes", "overdue (deadline passed, goroutine blocked)"), ("no", "not yet due"))

    def queryset(self, request, queryset):
        now = clock.now()
        if self.value() == "yes":
            return queryset.due_timers(now)
        if self.value() == "no":
            return queryset.filter(kind="timer", deadline__gte=now)
        return queryset


@admin.register(PendingCase)
class PendingCaseAdmin(ReadOnlyAdmin):
    list_display = ("id", "owner", "kind", "channel_col", "deadline", "target", "case_index", "created_at")
    list_filter = ("kind", OverdueFilter)
    search_fields = ("channel__name", "goroutine__process__id", "goroutine__name", "target", "external_send__key")
    list_select_related = ("goroutine", "external_send")
    fields = ("owner", "kind", "channel_col", "case_index", "wait_seq", "deadline", "target", "value_json", "created_at")
    readonly_fields = fields

    @admin.display(description="waiting")
    def owner(self, obj):
        if obj.goroutine_id:
            return format_html('<a href="{}">{}</a>', process_url(obj.goroutine.process_id), str(obj.goroutine))
        return f"external send {obj.external_send_id}"

    @admin.display(description="channel", ordering="channel_id")
    def channel_col(self, obj):
        return channel_link(obj.channel_id)

    @admin.display(description="value")
    def value_json(self, obj):
        return json_block(obj.value)


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("id", "process_col", "seq", "kind", "goroutine", "method", "case", "channel", "started_at", "took")
    list_filter = ("kind", "process__definition")
    search_fields = ("process__id", "goroutine", "method", "channel", "error")
    date_hierarchy = "started_at"
    fields = (
        "process_col", "seq", "kind", "goroutine", "method", "case", "channel", "value_json", "source",
        "detail_json", "error", "traceback_block", "started_at", "finished_at",
    )
    readonly_fields = fields

    @admin.display(description="process", ordering="process_id")
    def process_col(self, obj):
        return process_link(obj.process_id)

    @admin.display(description="took")
    def took(self, obj):
        return f"{obj.duration_ms:.1f} ms"

    @admin.display(description="value")
    def value_json(self, obj):
        return json_block(obj.value)

    @admin.display(description="detail")
    def detail_json(self, obj):
        return json_block(obj.detail)

    @admin.display(description="traceback")
    def traceback_block(self, obj):
        return format_html('<pre class="slct-traceback">{}</pre>', obj.traceback) if obj.traceback else "—"


@admin.register(ExternalSend)
class ExternalSendAdmin(ReadOnlyAdmin):
    list_display = ("key", "channel_col", "status", "value_preview", "created_at", "delivered_at", "delivered_to")
    list_filter = ("status",)
    search_fields = ("key", "channel", "delivered_to")
    fields = ("key", "channel_col", "status", "value_json", "fingerprint", "created_at", "delivered_at", "delivered_to")
    readonly_fields = fields

    @admin.display(description="channel", ordering="channel")
    def channel_col(self, obj):
        return channel_link(obj.channel)

    @admin.display(description="value")
    def value_preview(self, obj):
        return _preview(obj.value)

    @admin.display(description="value")
    def value_json(self, obj):
        return json_block(obj.value)


@admin.register(Outbox)
class OutboxAdmin(ReadOnlyAdmin):
    list_display = ("id", "process_col", "func", "status", "attempts", "not_before", "created_at", "done_at")
    list_filter = ("status",)
    search_fields = ("func", "process__id", "last_error")
    fields = (
        "process_col", "func", "args_json", "kwargs_json", "status", "attempts", "last_error", "result_json",
        "not_before", "created_at", "done_at",
    )
    readonly_fields = fields

    @admin.display(description="process", ordering="process_id")
    def process_col(self, obj):
        return process_link(obj.process_id)

    @admin.display(description="args")
    def args_json(self, obj):
        return json_block(obj.args)

    @admin.display(description="kwargs")
    def kwargs_json(self, obj):
        return json_block(obj.kwargs)

    @admin.display(description="result")
    def result_json(self, obj):
        return json_block(obj.result)


# -- the admin index: what an operator looks at first, engine internals below ----------------------

FRONT = ["processinstance", "channel", "schedule"]  # "SLCT workflows": the dashboard, processes, channels, schedules
INTERNALS_NAME = "SLCT engine internals"
APP_ORDER = ["slct_workflows", "slack_integration", "slct_workflows:internals"]  # then the rest, by name


def slct_app_list(original, request, app_label=None):
    """The default site's app list, rearranged: the workflow dashboard, processes and channels first;
    Slack next; goroutines, pending cases, buffers, events, external sends and the outbox grouped
    below as "SLCT engine internals"; then Django's own apps."""
    from slct_workflows.admin_views.common import can_view_processes

    apps = original(request, app_label)
    out = []
    for app in apps:
        if app.get("app_label") != "slct_workflows":
            out.append(app)
            continue
        models = app["models"]
        front = sorted((m for m in models if m["object_name"].lower() in FRONT),
                       key=lambda m: FRONT.index(m["object_name"].lower()))
        internals = [m for m in models if m["object_name"].lower() not in FRONT]
        if can_view_processes(request.user):
            front.insert(0, {
                "name": "Dashboard", "object_name": "Dashboard", "model": None, "perms": {"view": True},
                "admin_url": reverse("admin:slct_workflows_processinstance_dashboard"), "add_url": None,
                "view_only": True, "slct_id": "slct-dashboard-link",
            })
        if front:
            out.append({**app, "models": front})
        if internals:
            out.append({**app, "name": INTERNALS_NAME, "models": internals, "slct_key": "slct_workflows:internals"})

    def key(app):
        k = app.get("slct_key") or app.get("app_label")
        return (APP_ORDER.index(k) if k in APP_ORDER else len(APP_ORDER), app["name"].lower())

    return sorted(out, key=key)


if not getattr(admin.site.get_app_list, "slct_ordered", False):
    _original_app_list = admin.site.get_app_list
    _ordered = partial(slct_app_list, _original_app_list)
    _ordered.slct_ordered = True
    admin.site.get_app_list = _ordered

from slct_workflows import admin_schedules  # noqa: E402,F401  (the Schedule admin)
