"""`slct_check`: the live processes against the code, as a pre-deploy gate."""
from __future__ import annotations

import dataclasses
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from slct_workflows import deploy, services
from slct_workflows.definitions import Definition, step_methods
from slct_workflows.testing import forget

from . import defs
from .defs import NAME, answers


def deploy_code(registry, cls, version: str = "") -> None:
    """Replace every registered version of the test definition by `cls` (a new deploy)."""
    forget(NAME)
    registry.add(NAME, cls, version)


def slct_check(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("slct_check", *args, stdout=out, no_color=True)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + f"\nCommandError: {exc}"
    return 0, out.getvalue()


@pytest.fixture
def expense(workflow_registry, workflow_runner):
    """One v1 expense process: Main blocked on its answers channel + an hour timer, Reminder on a
    30-minute timer."""
    workflow_registry.add(NAME, defs.ExpenseV1)
    pid = workflow_runner.start(NAME, {"amount": 120, "note": "taxi"})
    workflow_runner.assert_waits(pid, Main=[f"recv {answers(pid)}", "timer"], Reminder=["timer"])
    return pid


def test_unchanged_code_passes(expense, workflow_runner):
    report = deploy.check()
    assert report.ok and report.problems == [] and report.checked == 1
    code, out = slct_check()
    assert code == 0
    assert "OK: 1 live process fit the code." in out


def test_renamed_target_of_a_blocked_goroutine_is_reported(expense, workflow_registry):
    deploy_code(workflow_registry, defs.ExpenseRenamed)
    report = deploy.check()
    assert not report.ok
    assert report.affected() == [expense]
    [problem] = report.problems
    assert (problem.code, problem.goroutine, problem.method) == ("missing_method", "Main", "Main_Answer")
    assert problem.process_id == expense and problem.status == "running"
    assert f"is blocked on recv {answers(expense)} -> Main_Answer" in problem.message
    assert "Main_Answer does not exist in ExpenseRenamed" in problem.message

    code, out = slct_check()
    assert code == 1
    assert f"{NAME} {expense} (running):" in out
    assert "[missing_method] goroutine Main is blocked on" in out
    assert "1 problem in 1 live process" in out
    assert "slct_migrate_status" in out  # says what to do about it


def test_signatures_must_fit_what_the_case_delivers(expense, workflow_registry):
    deploy_code(workflow_registry, defs.ExpenseBadSignatures)
    report = deploy.check()
    by_method = {p.method: p for p in report.problems}
    assert set(by_method) == {"Main_Answer", "Main_Timeout"}
    assert all(p.code == "signature" for p in report.problems)
    # a recv case delivers a value: (self, p) cannot take it
    assert "Main_Answer(self, p: 'Process') cannot take the value its recv case delivers" in by_method["Main_Answer"].message
    # a timer case delivers nothing: a required value parameter cannot be filled
    assert "Main_Timeout(self, p: 'Process', value) needs a value, but its timer case passes none" in by_method["Main_Timeout"].message


def test_defaults_and_varargs_fit(expense, workflow_registry):
    deploy_code(workflow_registry, defs.ExpenseDefaults)
    assert deploy.check().problems == []


def test_state_fields_dropped_are_reported_new_ones_with_defaults_are_not(expense, workflow_registry):
    deploy_code(workflow_registry, defs.ExpenseFieldsChanged)
    [problem] = deploy.check().problems
    assert problem.code == "dropped_field"
    assert "state field 'note' (= 'taxi') is not in ExpenseFieldsChanged any more" in problem.message


def test_new_field_without_default_is_reported(expense, workflow_registry):
    @dataclasses.dataclass
    class NeedsCurrency(defs.ExpenseV1):
        currency: str = dataclasses.field(default="EUR")

    # registry.add refuses fields without defaults; a definition can still end up with one (a
    # field whose default was removed after registration, a hand-made Definition): check it.
    for f in dataclasses.fields(NeedsCurrency):
        if f.name == "currency":
            f.default = dataclasses.MISSING
    forget(NAME)
    workflow_registry._by_name[NAME] = {"": Definition(NAME, NeedsCurrency, "", step_methods(NeedsCurrency))}
    workflow_registry._latest[NAME] = ""
    [problem] = deploy.check().problems
    assert problem.code == "field_without_default"
    assert "new state field 'currency' of NeedsCurrency has no default" in problem.message


def test_unregistered_definition_is_reported(expense, workflow_registry):
    forget(NAME)
    [problem] = deploy.check().problems
    assert problem.code == "unregistered"
    assert problem.message == f"definition {NAME!r} is not registered any more"
    code, out = slct_check()
    assert code == 1 and expense in out


def test_runnable_goroutine_next_method_is_checked(workflow_registry, workflow_runner):
    workflow_registry.add(NAME, defs.ExpenseV1)
    pid = workflow_runner.start(NAME, {"amount": 5})
    # An answer arrives but no worker has run the step yet: Main is runnable at Main_Answer.
    services.send(answers(pid), True, "k1")
    workflow_runner.assert_statuses(pid, Main="runnable")
    deploy_code(workflow_registry, defs.ExpenseBadSignatures)
    problems = {p.method: p for p in deploy.check().problems}
    assert set(problems) == {"Main_Answer"}  # Reminder's timer target still fits
    assert f"goroutine Main (runnable) will run Main_Answer after recv {answers(pid)}" in problems["Main_Answer"].message
    assert "cannot take the value its recv case delivers" in problems["Main_Answer"].message


def test_start_with_input_needs_a_value_parameter(workflow_registry, workflow_runner):
    @dataclasses.dataclass
    class TakesInput:
        n: int = 0

        def Main_Start(self, p, input):
            p.finish(input)

    @dataclasses.dataclass
    class IgnoresInput:
        n: int = 0

        def Main_Start(self, p):
            p.finish(None)

    workflow_registry.add("dx-start", TakesInput)
    with_input = services.start_process("dx-start", {"x": 1}).process.id  # not run: Main runnable at Main_Start
    without = services.start_process("dx-start", None).process.id
    forget("dx-start")
    workflow_registry.add("dx-start", IgnoresInput)
    [problem] = deploy.check().problems
    assert problem.process_id == with_input and problem.code == "signature"
    assert "Main_Start(self, p) cannot take the value its start delivers" in problem.message
    assert without not in deploy.check().affected()


def test_failed_processes_are_checked_finished_ones_are_not(workflow_registry, workflow_runner):
    workflow_registry.add("dx-flaky", defs.Flaky)
    failed = workflow_runner.start("dx-flaky")
    workflow_runner.send("flaky-in", "boom")
    while workflow_runner.process(failed).status == "running":
        workflow_runner.advance_to_next()  # the step is retried with backoff, then fails
    workflow_runner.assert_failed(failed, "RuntimeError: the step blew up")
    done = workflow_runner.start("dx-flaky")
    workflow_runner.send("flaky-in", "fine")
    workflow_runner.assert_finished(done, {"got": "fine"})

    @dataclasses.dataclass
    class FlakyWithoutWork:
        fail: bool = True
        done: bool = False

        def Main_Start(self, p, input=None):
            pass

    forget("dx-flaky")
    workflow_registry.add("dx-flaky", FlakyWithoutWork)
    report = deploy.check()
    assert report.affected() == [failed]
    [problem] = report.problems
    assert problem.status == "failed"
    assert "goroutine Main (failed) will run Main_Work after recv flaky-in" in problem.message


def test_definition_filter_allow_and_json(expense, workflow_registry):
    deploy_code(workflow_registry, defs.ExpenseFieldsChanged)
    assert slct_check("--definition", "something-else")[0] == 0

    code, out = slct_check("--allow", "dropped_field")
    assert code == 0
    assert "[allowed] state field 'note'" in out and "(1 allowed)" in out

    code, out = slct_check("--json")
    assert code == 1
    data = json.loads(out.split("\nCommandError")[0])
    assert data["ok"] is False and data["checked"] == 1 and data["affected"] == [expense]
    assert data["problems"][0]["code"] == "dropped_field"
    with pytest.raises(ValueError, match="unknown problem codes"):
        deploy.check(allow=["typo"])


def test_many_processes_are_all_reported(workflow_registry, workflow_runner, monkeypatch):
    workflow_registry.add(NAME, defs.ExpenseV1)
    pids = [workflow_runner.start(NAME, {"amount": i}) for i in range(7)]
    deploy_code(workflow_registry, defs.ExpenseRenamed)
    batches = []
    real = deploy._batches

    def spy(qs, size=None):
        for batch in real(qs, 3):  # several batches
            batches.append(len(batch))
            yield batch

    monkeypatch.setattr(deploy, "_batches", spy)
    report = deploy.check()
    assert batches == [3, 3, 1]
    assert report.checked == 7
    assert sorted(report.affected()) == sorted(pids)


@pytest.mark.django_db(transaction=True)
def test_manage_py_exit_codes_gate_a_deploy(workflow_runner):
    """The real commands, as CI runs them: exit status 1 and the affected process listed, then a
    status migration, then exit status 0."""
    import subprocess
    import sys

    from slct_workflows.models import PendingCase
    from tests.conftest import ROOT, _worker_env

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=_worker_env(),
                              capture_output=True, text=True, timeout=120)

    pid = workflow_runner.start("counter", {"idle_seconds": 60})
    ok = manage("slct_check")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: 1 live process fit the code." in ok.stdout

    # As if Main_Count had been renamed in the code this process was parked under.
    PendingCase.objects.filter(goroutine__process_id=pid, target="Main_Count").update(target="Main_Counted")
    bad = manage("slct_check")
    assert bad.returncode == 1
    assert f"counter {pid} (running):" in bad.stdout
    assert "Main_Counted does not exist in CounterProcess" in bad.stdout
    assert "1 problem in 1 live process" in bad.stderr

    moved = manage("slct_migrate_status", "counter", "Main_Counted", "Main_Count", "--version", "")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "moved 1 goroutine in 1 process" in moved.stdout
    assert deploy.check().ok
    workflow_runner.send("counter", 1)
    workflow_runner.assert_state(pid, counter=1)
