"""docs/TUTORIAL.md runs: its `# expenses/...` code blocks are written out as an `expenses`
package, each `# expenses/tests.py` block's tests run against the `# expenses/workflows.py` block
before it, and the version upgrade and deploy check it describes are carried out."""
from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest
from django.core.management import get_commands

from slct_workflows import deploy
from slct_workflows.testing import forget

DOC = Path(__file__).resolve().parents[2] / "docs" / "TUTORIAL.md"
NAME = "expense-approval"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(lang: str = "python") -> list[str]:
    return [code for kind, code in BLOCK.findall(DOC.read_text()) if kind == lang]


def stages() -> list[tuple[str, str]]:
    """(workflows.py, tests.py) pairs, in the order the tutorial shows them."""
    out, current = [], None
    for code in blocks():
        first = code.splitlines()[0].strip()
        if first == "# expenses/workflows.py":
            current = code
        elif first == "# expenses/tests.py":
            assert current is not None, "a tests block before any workflows block"
            out.append((current, code))
    return out


def names_of_tests(tests_code: str) -> list[str]:
    return [n.name for n in ast.parse(tests_code).body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]

CASES = [(i, name) for i, (_, tests) in enumerate(stages()) for name in names_of_tests(tests)]


@pytest.fixture
def package(tmp_path, monkeypatch, workflow_registry):
    """An importable `expenses` package in a temporary directory; `write(module, code)` imports it."""
    root = tmp_path / "expenses"
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    forget(NAME)

    def write(module: str, code: str):
        (root / f"{module}.py").write_text(code)
        importlib.invalidate_caches()
        sys.modules.pop(f"expenses.{module}", None)
        return importlib.import_module(f"expenses.{module}")

    yield write
    for name in [m for m in sys.modules if m == "expenses" or m.startswith("expenses.")]:
        del sys.modules[name]


def test_the_tutorial_has_its_stages():
    assert len(stages()) == 3
    assert len(CASES) >= 7
    for code in blocks():
        compile(code, "TUTORIAL.md", "exec")  # every Python block is valid Python


@pytest.mark.parametrize("stage,test", CASES, ids=[f"stage{i + 1}-{name}" for i, name in CASES])
def test_tutorial_tests_pass(package, workflow_runner, stage, test):
    workflows, tests = stages()[stage]
    package("workflows", workflows)
    module = package("tests", tests)
    getattr(module, test)(workflow_runner)


def test_upgrading_to_the_slack_version_keeps_old_processes_on_version_1(package, workflow_runner):
    """Section 6: version 1 stays registered (moved to workflows_v1.py) while its processes finish."""
    run = workflow_runner
    (v1, _), _, (v2, _) = stages()
    package("workflows_v1", v1)
    old = run.start(NAME, {"amount": 50})
    report = deploy.check()
    assert report.ok

    package("workflows", v2)
    assert deploy.check().ok  # old is still at home on version 1
    new = run.start(NAME, {"amount": 60})
    assert (run.process(old).version, run.process(new).version) == ("1", "2")
    run.send(f"expense-{old}", {"approved": True, "user": "carol"})
    run.assert_finished(old, {"approved": True, "by": "carol"})
    run.advance(hours=1)
    run.assert_finished(new, {"approved": False, "by": None})


def test_the_deploy_gate_catches_dropping_version_1(package, workflow_runner):
    """Section 6: deploying version 2 alone while a version-1 process waits is reported."""
    run = workflow_runner
    (v1, _), _, (v2, _) = stages()
    package("workflows_v1", v1)
    old = run.start(NAME, {"amount": 50})
    forget(NAME)
    package("workflows", v2)
    report = deploy.check()
    assert report.affected() == [old]
    [problem] = report.problems
    assert problem.message == (
        f"definition '{NAME}' version '1' is not registered any more (registered versions: '2')"
    )
    assert problem.message in DOC.read_text()  # the tutorial shows the real message


def test_the_commands_the_tutorial_mentions_exist():
    text = DOC.read_text()
    mentioned = set(re.findall(r"manage\.py (\w+)", text))
    assert {"slct_check", "slct_migrate_status", "rqworker", "slct_sweep"} <= mentioned
    assert mentioned <= set(get_commands())
    for option in ("--json", "--definition", "--allow", "--dry-run", "--version"):
        assert option in text


def test_the_failure_message_shown_is_what_the_runner_says(package, workflow_runner):
    (v1, _), *_ = stages()
    package("workflows", v1)
    pid = workflow_runner.start(NAME, {"amount": 120})
    workflow_runner.send("wrong-channel", {"approved": True, "user": "alice"})
    with pytest.raises(AssertionError) as err:
        workflow_runner.assert_finished(pid, {"approved": True, "by": "alice"})
    shown = DOC.read_text().split("AssertionError: ", 1)[1].split("```", 1)[0].strip()
    actual = str(err.value).replace(pid, "3f2a…")
    assert actual == shown
