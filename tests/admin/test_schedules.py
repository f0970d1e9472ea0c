"""The Schedule admin: operators add schedules through a form that checks cron, time zone and
definition with clear errors; the list shows the next run; a schedule declared in code can only
be paused."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from django.urls import reverse

from slct_workflows import Schedule, register, schedules
from slct_workflows.models import Schedule as ScheduleRow
from slct_workflows.testing import WorkflowRunner, isolated_registry

T0 = datetime(2026, 5, 4, 8, 59, 30, tzinfo=timezone.utc)
ADD = reverse("admin:slct_workflows_schedule_add")
LIST = reverse("admin:slct_workflows_schedule_changelist")


@pytest.fixture
def frozen(db):
    with isolated_registry():
        @register("adm-report", schedule=Schedule.cron("30 6 * * *", tz="Europe/Paris", name="adm-declared"))
        @dataclass
        class Report:
            def Main_Start(self, p, input):
                p.finish(input)

        with WorkflowRunner(now=T0) as run:
            yield run


def _form(**overrides) -> dict:
    return {"name": "adm-nightly", "definition": "adm-report", "cron": "0 2 * * *", "interval_seconds": "",
            "timezone": "Europe/Paris", "input": '{"full": true}', "catchup": "skip", "enabled": "on", **overrides}


@pytest.mark.parametrize("overrides, message", [
    ({"cron": "0 2 * *"}, "must have 5 fields"),
    ({"cron": "0 25 * * *"}, "is not valid"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone &#x27;Mars/Olympus&#x27;"),
    ({"cron": "", "interval_seconds": ""}, "give either a cron expression or an interval"),
    ({"interval_seconds": "60"}, "give either a cron expression or an interval"),
    ({"definition": "no-such-thing"}, "unknown process definition &#x27;no-such-thing&#x27;"),
    ({"name": "bad name"}, "schedule name must be"),
    ({"name": "adm-declared"}, "is declared in code; choose another name"),
    ({"input": "{not json"}, "Enter a valid JSON"),
])
def test_a_bad_schedule_is_refused_with_a_clear_error_and_nothing_saved(frozen, admin_client_, overrides, message):
    response = admin_client_.post(ADD, _form(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ScheduleRow.objects.filter(name=overrides.get("name", "adm-nightly")).exclude(
        declared_in_code=True).exists()


def test_an_added_schedule_gets_its_next_run_and_the_list_shows_it(frozen, admin_client_):
    response = admin_client_.post(ADD, _form())
    assert response.status_code == 302, response.content.decode()[:3000]
    row = ScheduleRow.objects.get(name="adm-nightly")
    assert (row.cron, row.timezone, row.input, row.declared_in_code) == ("0 2 * * *", "Europe/Paris",
                                                                         {"full": True}, False)
    assert row.next_run == datetime(2026, 5, 5, 0, tzinfo=timezone.utc)  # 02:00 in Paris

    admin_client_.post(ADD, _form(name="adm-often", cron="", interval_seconds="300", timezone="Asia/Tokyo"))
    assert ScheduleRow.objects.get(name="adm-often").timezone == "UTC"  # an interval is counted in UTC

    page = admin_client_.get(LIST).content.decode()
    assert "2026-05-05 00:00:00 UTC" in page  # adm-nightly's next run
    assert "2026-05-04 09:00:00 UTC" in page  # adm-often's
    assert "cron 0 2 * * * (Europe/Paris)" in page and "every 5 min" in page


def test_disabling_clears_the_next_run_and_enabling_plans_from_now(frozen, admin_client_):
    admin_client_.post(ADD, _form())
    row = ScheduleRow.objects.get(name="adm-nightly")
    change = reverse("admin:slct_workflows_schedule_change", args=[row.pk])
    admin_client_.post(change, _form(enabled=""))
    row.refresh_from_db()
    assert (row.enabled, row.next_run) == (False, None)
    assert "— (disabled)" in admin_client_.get(LIST).content.decode()

    frozen.advance(days=3)  # enabled again three days later: no catching up on the days it was off
    admin_client_.post(change, _form())
    row.refresh_from_db()
    assert row.next_run == datetime(2026, 5, 8, 0, tzinfo=timezone.utc)


def test_a_schedule_declared_in_code_can_be_paused_but_not_rewritten_or_deleted(frozen, admin_client_):
    schedules.tick()
    row = ScheduleRow.objects.get(name="adm-declared")
    change = reverse("admin:slct_workflows_schedule_change", args=[row.pk])
    response = admin_client_.post(change, {"enabled": "", "cron": "* * * * *", "definition": "other"})
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.enabled, row.cron, row.definition) == (False, "30 6 * * *", "adm-report")
    assert admin_client_.post(reverse("admin:slct_workflows_schedule_delete", args=[row.pk]),
                              {"post": "yes"}).status_code == 403
    assert ScheduleRow.objects.filter(pk=row.pk).exists()
    page = admin_client_.get(LIST).content.decode()
    assert ">code<" in page


def test_schedules_sit_beside_processes_on_the_admin_index(frozen, admin_client_):
    page = admin_client_.get(reverse("admin:index")).content.decode()
    internals = page.index("SLCT engine internals</a>")
    assert page.index(">Schedules<") < internals
