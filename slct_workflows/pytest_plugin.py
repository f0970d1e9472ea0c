"""pytest fixtures for testing SLCT processes.

Enable in your root conftest.py:

    pytest_plugins = ["slct_workflows.pytest_plugin"]

(or `-p slct_workflows.pytest_plugin` in pytest's addopts). Needs pytest-django.

    def test_counter(workflow_runner):
        pid = workflow_runner.start("counter", {"idle_seconds": 60})
        workflow_runner.send("counter", 1)
        workflow_runner.advance(minutes=1)
        workflow_runner.assert_finished(pid, {"count": 1})
"""
from __future__ import annotations

import pytest


@pytest.fixture
def workflow_runner(db):
    """A `WorkflowRunner` (frozen clock, no Redis) active for the test, on the test database."""
    from slct_workflows.testing import WorkflowRunner

    with WorkflowRunner() as run:
        yield run


@pytest.fixture
def workflow_registry():
    """The process registry; whatever the test registers (or forgets) is undone after it."""
    from slct_workflows.testing import isolated_registry

    with isolated_registry() as reg:
        yield reg
