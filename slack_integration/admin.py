"""Admin: every Slack message, a "Pending questions" page where staff answer without Slack, and
the Slack users linked to Django users.

Answers from the admin go through the same path as a Slack click (`services.deliver_answer`,
the engine's idempotent external send), so an admin answer and a Slack click cannot both land;
they are recorded as answered by the Django user who gave them.
"""
from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from slct_workflows.errors import SlctError

from . import blocks, services
from .models import Kind, PendingQuestion, SlackMessage, SlackUser, Status

OUTCOME_WORDS = {
    services.DELIVERED: "Answer delivered to the process.",
    services.REPEATED: "This answer was already delivered.",
    services.ALREADY_ANSWERED: "Someone answered this question first; nothing was delivered.",
    services.NOT_OPEN: "The question is no longer open; nothing was delivered.",
}


def process_link(pid: str):
    try:
        url = reverse("admin:slct_workflows_processinstance_change", args=[quote(pid)])
    except NoReverseMatch:
        return pid
    return format_html('<a href="{}">{}</a>', url, pid)


@admin.register(SlackMessage)
class SlackMessageAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "short_text", "process_col", "goroutine", "channel", "delivery",
                    "answered_by_col", "created_at")
    list_filter = ("kind", "status", "delivery", "answered_via")
    search_fields = ("text", "process__id", "reply_channel", "ts", "answered_by", "answered_by_name")
    date_hierarchy = "created_at"
    actions = ["reconcile_selected", "resync_selected"]
    readonly_fields = [f.name for f in SlackMessage._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def history_view(self, request, object_id, extra_context=None):
        return HttpResponseRedirect(reverse("admin:slack_integration_slackmessage_change", args=[object_id]))

    @admin.display(description="text")
    def short_text(self, obj):
        return obj.text if len(obj.text) <= 80 else obj.text[:79] + "…"

    @admin.display(description="process", ordering="process")
    def process_col(self, obj):
        return process_link(obj.process_id)

    @admin.display(description="answered by")
    def answered_by_col(self, obj):
        if not obj.answered_by:
            return "—"
        return f"{obj.answered_by_name or obj.answered_by} ({obj.answered_via})"

    @admin.action(description="Re-check against the process (close questions it moved past)")
    def reconcile_selected(self, request, queryset):
        closed = sum(1 for pk in queryset.values_list("pk", flat=True) if services.reconcile(pk))
        self.message_user(request, f"{closed} question(s) closed.")

    @admin.action(description="Update the Slack messages to their current state (chat.update)")
    def resync_selected(self, request, queryset):
        n = 0
        for m in queryset.exclude(ts=""):
            services.queue_job(services.UPDATE_JOB, m.pk, process_id=m.process_id)
            n += 1
        self.message_user(request, f"{n} update(s) queued.")


@admin.register(PendingQuestion)
class PendingQuestionAdmin(admin.ModelAdmin):
    """The changelist *is* the pending-questions page (with an answer form per question)."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return services.may_answer_in_admin(request.user)

    def has_view_permission(self, request, obj=None):
        return self.has_change_permission(request, obj) or request.user.has_perm(
            "slack_integration.view_pendingquestion"
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return HttpResponseRedirect(reverse("admin:slack_integration_pendingquestion_changelist"))

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        if request.method == "POST":
            return self._answer(request)
        services.sync_all(limit=500)  # close what the engine has moved past before listing
        questions = list(
            SlackMessage.objects.filter(status=Status.OPEN).exclude(kind=Kind.POST)
            .select_related("process").order_by("created_at", "id")[:500]
        )
        recent = list(
            SlackMessage.objects.exclude(kind=Kind.POST).exclude(status=Status.OPEN)
            .order_by("-closed_at", "-id")[:20]
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Pending questions",
            "questions": [(q, process_link(q.process_id)) for q in questions],
            "recent": [(m, blocks.outcome_line(m), process_link(m.process_id)) for m in recent],
            "can_answer": self.has_change_permission(request),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/slack_integration/pending_questions.html", context)

    def _answer(self, request):
        back = HttpResponseRedirect(request.path)
        if not self.has_change_permission(request):
            messages.error(request, "You may not answer questions.")
            return back
        try:
            m = SlackMessage.objects.get(pk=int(request.POST.get("message", "")))
        except (ValueError, SlackMessage.DoesNotExist):
            messages.error(request, "Unknown question.")
            return back
        answer = request.POST.get("answer")
        try:
            outcome = services.answer_from_admin(
                m, request.user,
                approved={"approve": True, "reject": False}.get(answer) if m.kind == Kind.APPROVE else None,
                text=request.POST.get("text") if m.kind == Kind.ASK else None,
                choice=request.POST.get("choice") if m.kind == Kind.CHOOSE else None,
            )
        except SlctError as exc:
            messages.error(request, f"Not answered: {exc}")
            return back
        level = messages.SUCCESS if outcome == services.DELIVERED else messages.WARNING
        messages.add_message(request, level, f"Question #{m.pk}: {OUTCOME_WORDS.get(outcome, outcome)}")
        return back


@admin.register(SlackUser)
class SlackUserAdmin(admin.ModelAdmin):
    """Links a Slack user id to a Django user: `/slct` then acts with that user's permissions, and
    answers given in Slack are recorded with the account as well as the Slack id."""

    list_display = ("slack_user_id", "team_id", "user", "user_active", "note", "created_at")
    list_filter = ("team_id",)
    search_fields = ("slack_user_id", "team_id", "user__username", "user__email", "user__first_name",
                     "user__last_name", "note")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    ordering = ("slack_user_id", "team_id")

    @admin.display(description="active", boolean=True)
    def user_active(self, obj):
        return obj.user.is_active
