"""Admin for scheduled starts (slct_workflows.schedules): operators add, edit, pause and delete
their own schedules; a schedule declared in code can only be paused (its code sets the rest)."""
from __future__ import annotations

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from slct_workflows import clock, schedules, slots
from slct_workflows.admin_views.common import process_link
from slct_workflows.definitions import registry
from slct_workflows.errors import DeclarationError
from slct_workflows.models import Schedule

EDITABLE_WHEN_DECLARED = {"enabled"}


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = ["name", "definition", "cron", "interval_seconds", "timezone", "input", "catchup", "enabled"]
        help_texts = {
            "name": f"Also the start of each process id: <name>-<slot in UTC>. At most {slots.SCHEDULE_NAME_MAX} "
                    "characters of letters, digits and _.:@+-.",
            "cron": 'Minute hour day month weekday, on the wall clock of the time zone ("0 9 * * mon-fri"), '
                    "or @hourly, @daily, @weekly, @monthly, @yearly. Leave empty for an interval.",
            "interval_seconds": "Start every this many seconds (aligned on the epoch, in UTC). "
                                "Leave empty for a cron expression.",
            "timezone": 'An IANA name such as "Europe/Paris" (cron only).',
            "input": "The JSON input of every process started.",
        }

    def clean_name(self):
        name = self.cleaned_data["name"]
        try:
            slots.check_name(name)
        except DeclarationError as exc:
            raise forms.ValidationError(str(exc)) from None
        if name in schedules.declared() and not (self.instance.pk and self.instance.declared_in_code):
            raise forms.ValidationError(f"the schedule {name!r} is declared in code; choose another name")
        return name

    def clean_definition(self):
        name = self.cleaned_data["definition"]
        if not any(d.name == name for d in registry.latest()):
            known = ", ".join(d.name for d in registry.latest()) or "none"
            raise forms.ValidationError(f"unknown process definition {name!r} (known: {known})")
        return name

    def clean(self):
        data = super().clean()
        if self.errors or self.instance.declared_in_code:
            return data  # a declared schedule's timing comes from its code
        cron, interval = data.get("cron", "").strip(), data.get("interval_seconds")
        if bool(cron) == bool(interval):
            raise forms.ValidationError("give either a cron expression or an interval in seconds, not both")
        data["cron"] = " ".join(cron.split())
        try:
            if cron:
                slots.Schedule.cron(cron, tz=data.get("timezone", ""))
            else:
                slots.Schedule.every(interval)
        except DeclarationError as exc:
            field = "interval_seconds" if not cron else "timezone" if "time zone" in str(exc) else "cron"
            self.add_error(field, str(exc))
        if not cron:
            data["timezone"] = "UTC"  # intervals are counted in UTC
        return data


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = ["name", "definition", "when", "next_run_col", "last_run", "enabled", "kind", "last_error_col"]
    list_filter = ["enabled", "declared_in_code", "catchup", "definition"]
    search_fields = ["name", "definition", "cron"]
    list_per_page = 50
    readonly_fields = ["next_run_col", "last_run", "last_error", "kind"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.declared_in_code:
            return [f for f in ScheduleForm.Meta.fields if f not in EDITABLE_WHEN_DECLARED] + self.readonly_fields
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        # A schedule still declared in code would come back at the next tick: pause it instead.
        if obj is not None and obj.declared_in_code and obj.name in schedules.declared():
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        timing = {"cron", "interval_seconds", "timezone", "enabled"}
        if not change or timing & set(form.changed_data) or obj.next_run is None:
            schedules.set_next_run(obj, clock.now())
        super().save_model(request, obj, form, change)

    @admin.display(description="when")
    def when(self, obj):
        try:
            return schedules.spec(obj).describe()
        except DeclarationError as exc:
            return f"invalid: {exc}"

    @admin.display(description="next run", ordering="next_run")
    def next_run_col(self, obj):
        if not obj.enabled:
            return "— (disabled)"
        if obj.next_run is None:
            return "— (planned at the next tick)"
        return format_html('<time datetime="{}">{}</time>', obj.next_run.isoformat(),
                           obj.next_run.strftime("%Y-%m-%d %H:%M:%S UTC"))

    @admin.display(description="last run", ordering="last_slot")
    def last_run(self, obj):
        if obj.last_slot is None:
            return "—"
        return format_html("{} {}", obj.last_slot.strftime("%Y-%m-%d %H:%M:%S UTC"),
                           process_link(obj.last_process_id) if obj.last_process_id else "")

    @admin.display(description="kind", ordering="declared_in_code")
    def kind(self, obj):
        if not obj.declared_in_code:
            return "operator"
        return "code" if obj.name in schedules.declared() else "code (no longer declared)"

    @admin.display(description="last error")
    def last_error_col(self, obj):
        return obj.last_error[:120] or "—"
