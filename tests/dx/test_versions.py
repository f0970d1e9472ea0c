"""Definition versions: old instances finish on the code that started them."""
from __future__ import annotations

import pytest

from slct_workflows import deploy, register
from slct_workflows.errors import NotFound
from slct_workflows.testing import forget, isolated_registry

from . import defs
from .defs import NAME, answers


def test_new_starts_use_the_new_version_old_instances_continue_on_theirs(workflow_registry, workflow_runner):
    run = workflow_runner
    workflow_registry.add(NAME, defs.ExpenseV1, "1")
    old = run.start(NAME, {"amount": 10})
    assert run.process(old).version == "1"

    workflow_registry.add(NAME, defs.ExpenseV2, "2")  # the deploy of version 2, v1 still registered
    new = run.start(NAME, {"amount": 20})
    assert run.process(new).version == "2"
    assert workflow_registry.get(NAME).cls is defs.ExpenseV2

    run.send(answers(old), True)
    run.assert_finished(old, {"by": "v1", "approved": True})
    run.send(answers(new), True)
    run.assert_finished(new, {"by": "v2", "approved": True, "amount": 20})


def test_an_old_instance_keeps_its_version_through_timers_and_goroutines(workflow_registry, workflow_runner):
    run = workflow_runner
    workflow_registry.add(NAME, defs.ExpenseV1, "1")
    old = run.start(NAME, {"amount": 10})
    workflow_registry.add(NAME, defs.ExpenseV2, "2")
    run.advance(minutes=30)  # the v1 Reminder goroutine nudges
    run.assert_state(old, reminded=1)
    run.advance(minutes=30)
    run.assert_finished(old, {"by": "v1", "approved": False})


def test_versions_order_numerically():
    with isolated_registry(empty=True) as reg:
        reg.add("v", defs.ExpenseV1, "9")
        reg.add("v", defs.ExpenseV2, "10")
        assert reg.get("v").version == "10"
        assert reg.get("v", "9").cls is defs.ExpenseV1


def test_slct_check_flags_an_instance_whose_version_is_gone(workflow_registry, workflow_runner):
    run = workflow_runner
    workflow_registry.add(NAME, defs.ExpenseV1, "1")
    old = run.start(NAME, {"amount": 10})
    workflow_registry.add(NAME, defs.ExpenseV2, "2")
    new = run.start(NAME, {"amount": 20})
    assert deploy.check().ok

    forget(NAME, "1")  # version 1's code is deleted while `old` still runs
    report = deploy.check()
    assert report.affected() == [old]
    [problem] = report.problems
    assert problem.code == "unregistered" and problem.version == "1"
    assert problem.message == f"definition {NAME!r} version '1' is not registered any more (registered versions: '2')"

    # The engine agrees: the old instance's next step fails, it does not run version 2's code.
    run.send(answers(old), True)
    run.assert_failed(old, f"process definition {NAME!r} has no version '1'")
    run.send(answers(new), True)
    run.assert_finished(new)


def test_two_versions_need_two_classes(workflow_registry):
    register(NAME, version="1")(defs.ExpenseV1)
    register(NAME, version="1")(defs.ExpenseV1)  # re-importing the same module is fine
    with pytest.raises(ValueError, match="already registered"):
        register(NAME, version="1")(defs.ExpenseV2)
    with pytest.raises(NotFound, match="has no version '3'"):
        workflow_registry.get(NAME, "3")
