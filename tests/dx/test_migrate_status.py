"""`slct_migrate_status`: move goroutines from a method that is going away to its replacement."""
from __future__ import annotations

import threading
import time
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from slct_workflows import deploy, services
from slct_workflows.deploy import MigrationError
from slct_workflows.models import Event, Goroutine, PendingCase, ProcessInstance
from slct_workflows.testing import forget

from . import defs
from .defs import NAME, answers


def deploy_code(registry, cls, version: str = "") -> None:
    forget(NAME)
    registry.add(NAME, cls, version)


def migrate(*args: str, **options) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("slct_migrate_status", *args, stdout=out, no_color=True, **options)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + f"\nCommandError: {exc}"
    return 0, out.getvalue()


@pytest.fixture
def started(workflow_registry, workflow_runner):
    """Two v1 expense processes blocked on Main_Answer (recv) / Main_Timeout (timer)."""
    workflow_registry.add(NAME, defs.ExpenseV1)
    return [workflow_runner.start(NAME, {"amount": n}) for n in (10, 20)]


def test_blocked_goroutines_move_and_then_run_the_new_method(started, workflow_registry, workflow_runner):
    run = workflow_runner
    deploy_code(workflow_registry, defs.ExpenseRenamed)
    assert sorted(deploy.check().affected()) == sorted(started)

    code, out = migrate(NAME, "Main_Answer", "Main_Decide")
    assert code == 0, out
    for pid in started:
        assert f"{NAME} {pid}: moved Main (blocked on recv {answers(pid)}) Main_Answer -> Main_Decide" in out
    assert "moved 2 goroutines in 2 processes from Main_Answer to Main_Decide" in out
    assert deploy.check().ok

    a, b = started
    # only the recv case moved: the timer case still goes to Main_Timeout
    assert run.targets(a) == {"Main": ["Main_Decide", "Main_Timeout"], "Reminder": ["Reminder_Nudge"]}
    assert run.history(a)[-1] == "migrate Main_Answer -> Main_Decide"
    event = Event.objects.filter(process_id=a, kind="migrate").get()
    assert event.detail == {
        "from": "Main_Answer", "to": "Main_Decide", "version": "",
        "goroutines": [{"name": "Main", "status": "blocked", "cases": [f"recv {answers(a)}"]}],
    }
    assert event.goroutine == "Main" and event.seq == ProcessInstance.objects.get(pk=a).step_count

    run.send(answers(a), True)
    run.assert_finished(a, {"by": "renamed", "approved": True})
    run.advance(hours=1)
    run.assert_finished(b, {"by": "renamed", "approved": False})


def test_runnable_and_failed_goroutines_move_their_next_method(workflow_registry, workflow_runner):
    run = workflow_runner
    workflow_registry.add("dx-flaky", defs.Flaky)
    failed = run.start("dx-flaky")
    run.send("flaky-in", "boom")
    while run.process(failed).status == "running":
        run.advance_to_next()
    runnable = run.start("dx-flaky")
    services.send("flaky-in", "later", "k-later")  # delivered, not yet run: Main runnable at Main_Work
    assert run.targets(runnable) == {"Main": ["Main_Work"]}
    assert run.targets(failed) == {"Main": ["Main_Work"]}

    report = deploy.migrate_status("dx-flaky", "Main_Work", "Main_Fixed")
    assert sorted(report.processes) == sorted([failed, runnable])
    assert {(m.process_id, m.status) for m in report.moves} == {(failed, "failed"), (runnable, "runnable")}
    assert run.targets(failed) == run.targets(runnable) == {"Main": ["Main_Fixed"]}

    run.run()
    run.assert_finished(runnable, {"fixed": "later"})
    run.retry(failed)
    run.assert_finished(failed, {"fixed": "boom"})
    run.assert_history(failed, [
        "start", "Main.Main_Start", "Main.Main_Work [error]", "Main.Main_Work [error]", "Main.Main_Work [failed]",
        "migrate Main_Work -> Main_Fixed", "retry", "Main.Main_Fixed",
    ])


def test_nothing_changes_when_the_target_does_not_fit(started, workflow_registry, workflow_runner):
    deploy_code(workflow_registry, defs.ExpenseRenamed)
    before = list(PendingCase.objects.order_by("id").values_list("target", flat=True))

    with pytest.raises(MigrationError, match=r"Main_Nope does not exist in ExpenseRenamed"):
        deploy.migrate_status(NAME, "Main_Answer", "Main_Nope")
    # a recv case delivers a value; the method takes none
    with pytest.raises(MigrationError) as err:
        deploy.migrate_status(NAME, "Main_Answer", "Main_DecideNoValue")
    assert "nothing was changed" in str(err.value)
    assert "Main_DecideNoValue(self, p: 'Process') cannot take the value its recv case delivers" in str(err.value)
    for pid in started:
        assert f"process {pid}, goroutine Main (blocked on recv {answers(pid)})" in str(err.value)
    with pytest.raises(MigrationError, match="belong to different goroutines"):
        deploy.migrate_status(NAME, "Main_Answer", "Reminder_Later")
    with pytest.raises(MigrationError, match="same method"):
        deploy.migrate_status(NAME, "Main_Answer", "Main_Answer")
    with pytest.raises(MigrationError, match="naming rule"):
        deploy.migrate_status(NAME, "answer", "Main_Decide")
    with pytest.raises(MigrationError, match="unknown process definition 'nope'"):
        deploy.migrate_status("nope", "Main_Answer", "Main_Decide")

    code, out = migrate(NAME, "Main_Answer", "Main_Nope")
    assert code == 1 and "Main_Nope does not exist" in out

    assert list(PendingCase.objects.order_by("id").values_list("target", flat=True)) == before
    assert not Event.objects.filter(kind="migrate").exists()


def test_dry_run_changes_nothing(started, workflow_registry, workflow_runner):
    deploy_code(workflow_registry, defs.ExpenseRenamed)
    code, out = migrate(NAME, "Main_Answer", "Main_Decide", "--dry-run")
    assert code == 0
    assert "Dry run: would move 2 goroutines in 2 processes" in out
    assert not PendingCase.objects.filter(target="Main_Decide").exists()
    assert not Event.objects.filter(kind="migrate").exists()
    assert not deploy.check().ok


def test_nothing_to_move(started, workflow_registry):
    deploy_code(workflow_registry, defs.ExpenseRenamed)
    code, out = migrate(NAME, "Main_Gone", "Main_Decide")
    assert code == 0 and "No live goroutine of dx-expense is at Main_Gone; nothing to do." in out


def test_finished_processes_are_left_alone(started, workflow_registry, workflow_runner):
    a, b = started
    workflow_runner.cancel(b)
    deploy_code(workflow_registry, defs.ExpenseRenamed)
    report = deploy.migrate_status(NAME, "Main_Answer", "Main_Decide")
    assert report.processes == [a]
    assert not Event.objects.filter(process_id=b, kind="migrate").exists()


def test_version_option_moves_only_that_versions_processes(workflow_registry, workflow_runner):
    run = workflow_runner
    workflow_registry.add(NAME, defs.ExpenseV1, "1")
    old = run.start(NAME, {"amount": 1})
    workflow_registry.add(NAME, defs.ExpenseV2, "2")
    new = run.start(NAME, {"amount": 2})
    assert (run.process(old).version, run.process(new).version) == ("1", "2")

    code, out = migrate(NAME, "Main_Answer", "Main_Timeout", version="1", dry_run=True)
    assert code == 1 and "cannot take the value its recv case delivers" in out  # validated per version

    @__import__("dataclasses").dataclass
    class ExpenseV1Fixed(defs.ExpenseV1):
        def Main_Review(self, p, value):
            p.finish({"by": "v1-fixed", "approved": bool(value)})

    forget(NAME, "1")
    workflow_registry.add(NAME, ExpenseV1Fixed, "1")
    code, out = migrate(NAME, "Main_Answer", "Main_Review", version="1")
    assert code == 0 and "moved 1 goroutine in 1 process (version 1)" in out
    assert run.targets(old)["Main"] == ["Main_Review", "Main_Timeout"]
    assert run.targets(new)["Main"] == ["Main_Answer", "Main_Timeout"]
    run.send(answers(old), "yes")
    run.assert_finished(old, {"by": "v1-fixed", "approved": True})


@pytest.mark.django_db(transaction=True)
def test_migration_waits_for_a_step_holding_the_process_lock(workflow_registry, workflow_runner):
    """A step locks the process row; the migration locks it too, so it waits and then sees what
    the step left (here: the goroutine moved on to another method) instead of overwriting it."""
    run = workflow_runner
    workflow_registry.add(NAME, defs.ExpenseV1)
    pid = run.start(NAME, {"amount": 1})
    services.send(answers(pid), True, "k")  # Main runnable at Main_Answer
    deploy_code(workflow_registry, defs.ExpenseRenamed)

    locked, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def step_in_progress():
        try:
            with transaction.atomic():
                ProcessInstance.objects.select_for_update().get(pk=pid)
                Goroutine.objects.filter(process_id=pid, name="Main").update(next_method="Main_Timeout", next_kind="timer")
                locked.set()
                release.wait(10)
                time.sleep(0.3)  # still holding the lock when the migration starts waiting
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            locked.set()
        finally:
            connection.close()

    t = threading.Thread(target=step_in_progress)
    t.start()
    assert locked.wait(10)
    release.set()
    started = time.monotonic()
    report = deploy.migrate_status(NAME, "Main_Answer", "Main_Decide")
    waited = time.monotonic() - started
    t.join(10)
    assert not errors, errors
    assert waited >= 0.2, f"the migration did not wait for the process lock ({waited:.3f}s)"
    # The step won: its goroutine is at Main_Timeout, and the migration did not touch it.
    assert run.targets(pid)["Main"] == ["Main_Timeout"]
    assert report.moves == [] and pid in report.skipped
    assert not Event.objects.filter(process_id=pid, kind="migrate").exists()
