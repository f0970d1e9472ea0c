"""docs/TUTORIAL.md runs: its `# expenses/...` blocks are applied in order to an app's files, as a
reader following it would (a `workflows.py` block replaces the module, one that imports
`.workflows_v1` first moves the old module there; a `tests.py` block is added to the tests; a
`diff` block changes every line it names), and at each `tests.py` block every test in the file
as it stands then runs against the workflows as they stand then. The version upgrade and the
deploy check the tutorial describes are carried out.

The app is written under a temporary directory with a package name of its own, so an `expenses`
app in the repository (the one the tutorial has you make) neither shadows it nor is disturbed."""
from __future__ import annotations

import ast
import importlib
import re
import sys
import uuid
from pathlib import Path

import pytest
from django.core.management import get_commands

from slct_workflows import deploy
from slct_workflows.testing import forget

DOC = Path(__file__).resolve().parents[2] / "docs" / "TUTORIAL.md"
NAME = "expense-approval"
APP = "expenses"  # the app's name in the tutorial
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(lang: str = "python") -> list[str]:
    return [code for kind, code in BLOCK.findall(DOC.read_text()) if kind == lang]


def apply_diff(text: str, diff: str) -> str:
    """Replace every line equal to a `-` line with the `+` line after it."""
    lines = [line for line in diff.splitlines()[1:] if line.strip()]
    assert len(lines) % 2 == 0, f"a diff block needs -/+ pairs:\n{diff}"
    for minus, plus in zip(lines[::2], lines[1::2]):
        assert minus.startswith("-") and plus.startswith("+"), f"a diff block needs -/+ pairs:\n{diff}"
        old, new = minus[1:], plus[1:]
        found = text.splitlines()
        assert old in found, f"the tutorial changes a line the file does not have: {old!r}"
        text = "\n".join(new if line == old else line for line in found) + "\n"
    return text


def stages() -> list[dict[str, str]]:
    """The app's files ({module: code}) at each `tests.py` block, in the order the tutorial shows them."""
    out: list[dict[str, str]] = []
    files: dict[str, str] = {}
    for kind, code in BLOCK.findall(DOC.read_text()):
        first = code.splitlines()[0].strip() if code.strip() else ""
        if kind == "python" and first == f"# {APP}/workflows.py":
            if re.search(r"^from \.workflows_v1 import", code, re.M):
                assert "workflows" in files, "workflows_v1 imported before there was a version to move"
                files["workflows_v1"] = files["workflows"]
            files["workflows"] = code
        elif kind == "python" and first == f"# {APP}/tests.py":
            assert "workflows" in files, "a tests block before any workflows block"
            files["tests"] = files.get("tests", "") + ("\n\n" if "tests" in files else "") + code
            out.append(dict(files))
        elif kind == "diff" and first == f"# {APP}/tests.py":
            assert "tests" in files, "a diff of the tests before there are tests"
            files["tests"] = apply_diff(files["tests"], code)
        elif first.startswith(f"# {APP}/"):
            raise AssertionError(f"a block for a file the test does not know: {first}")
    return out


def names_of_tests(tests_code: str) -> list[str]:
    return [n.name for n in ast.parse(tests_code).body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]


CASES = [(i, name) for i, files in enumerate(stages()) for name in names_of_tests(files["tests"])]


@pytest.fixture
def package(tmp_path, monkeypatch, workflow_registry):
    """The tutorial's app as an importable package with a unique name in a temporary directory:
    `write(module, code)` writes and imports one module, with `expenses.` in the code renamed."""
    name = f"tutorial_{APP}_{uuid.uuid4().hex[:12]}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    forget(NAME)

    def write(module: str, code: str):
        code = re.sub(rf"\b{APP}\.", f"{name}.", code)
        (root / f"{module}.py").write_text(code)
        importlib.invalidate_caches()
        sys.modules.pop(f"{name}.{module}", None)
        return importlib.import_module(f"{name}.{module}")

    write.package = name
    yield write
    for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[loaded]


def load(package, files: dict[str, str]):
    """Write and import the app's files at one stage; returns the tests module."""
    for module in ("workflows_v1", "workflows"):
        if module in files:
            package(module, files[module])
    return package("tests", files["tests"])


def test_the_tutorial_has_its_stages():
    assert len(stages()) == 3
    assert len(CASES) >= 15
    for code in blocks():
        compile(code, "TUTORIAL.md", "exec")  # every Python block is valid Python
    final = stages()[-1]
    assert "version=\"1\"" in final["tests"] and "workflows_v1" in final  # step 5 keeps testing version 1


@pytest.mark.parametrize("stage,test", CASES, ids=[f"stage{i + 1}-{name}" for i, name in CASES])
def test_tutorial_tests_pass(package, workflow_runner, stage, test):
    module = load(package, stages()[stage])
    getattr(module, test)(workflow_runner)


def test_step_3_changes_the_history_step_2_asserted(package, workflow_runner):
    """Without the change step 3 tells of, step 2's test_approved fails against step 3's code."""
    first, second, _ = stages()
    unchanged = dict(second, tests=first["tests"])
    module = load(package, unchanged)
    with pytest.raises(AssertionError, match="history of process"):
        module.test_approved(workflow_runner)


def test_version_1_tests_would_fail_on_the_latest_version(package, workflow_runner):
    """Without `version="1"` step 3's tests start version 2 and fail: the change step 5 tells of is needed."""
    _, second, third = stages()
    unchanged = dict(third, tests=second["tests"])
    module = load(package, unchanged)
    with pytest.raises(AssertionError):
        module.test_approved(workflow_runner)


def test_an_expenses_app_in_the_repository_does_not_shadow_the_tutorial(package, workflow_runner, monkeypatch, tmp_path):
    """A reader's own `expenses` app (imported at start-up, as an installed app is) is neither used
    nor unloaded. Stands in for it with a package of its own unless the real one is there."""
    if f"{APP}.workflows" not in sys.modules:
        mine = tmp_path / "mine" / APP
        mine.mkdir(parents=True)
        (mine / "__init__.py").write_text("")
        (mine / "workflows.py").write_text("MARK = 'the reader'\n")
        monkeypatch.syspath_prepend(str(mine.parent))
        monkeypatch.delitem(sys.modules, APP, raising=False)
        monkeypatch.setitem(sys.modules, f"{APP}.workflows", importlib.import_module(f"{APP}.workflows"))
        monkeypatch.setitem(sys.modules, APP, sys.modules[APP])
    theirs = sys.modules[f"{APP}.workflows"], sys.modules[APP]
    module = load(package, stages()[-1])
    assert not module.__name__.startswith(f"{APP}.")
    module.test_approved_in_slack(workflow_runner)
    assert (sys.modules[f"{APP}.workflows"], sys.modules[APP]) == theirs


def test_upgrading_to_the_slack_version_keeps_old_processes_on_version_1(package, workflow_runner):
    """Sections 5 and 6: version 1 stays registered (moved to workflows_v1.py) while its processes finish."""
    run = workflow_runner
    final = stages()[-1]
    package("workflows_v1", final["workflows_v1"])
    old = run.start(NAME, {"amount": 50})
    report = deploy.check()
    assert report.ok

    package("workflows", final["workflows"])
    assert deploy.check().ok  # old is still at home on version 1
    new = run.start(NAME, {"amount": 60})
    assert (run.process(old).version, run.process(new).version) == ("1", "2")
    older = run.start(NAME, {"amount": 70}, version="1")  # version 1 can still be started by its version
    assert run.process(older).version == "1"
    run.send(f"expense-{old}", {"approved": True, "user": "carol"})
    run.assert_finished(old, {"approved": True, "by": "carol"})
    run.advance(hours=1)
    run.assert_finished(new, {"approved": False, "by": None})
    run.assert_finished(older, {"approved": False, "by": None})


def test_the_deploy_gate_catches_dropping_version_1(package, workflow_runner):
    """Section 6: deploying version 2 alone (without keeping version 1) while a version-1 process waits is reported."""
    run = workflow_runner
    final = stages()[-1]
    package("workflows_v1", final["workflows_v1"])
    old = run.start(NAME, {"amount": 50})
    forget(NAME)
    alone = "\n".join(line for line in final["workflows"].splitlines() if "import" not in line or "workflows_v1" not in line)
    assert alone != final["workflows"]
    package("workflows", alone)
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
    assert {"startapp", "slct_check", "slct_migrate_status", "rqworker", "slct_sweep"} <= mentioned
    assert mentioned <= set(get_commands())
    for option in ("--json", "--definition", "--allow", "--dry-run", "--version"):
        assert option in text
    # Run as written from the repository root: the project's Python is .venv's, which ./run.sh and ./test.sh set up.
    bare = [m.start() for m in re.finditer(r"manage\.py", text) if not text[: m.start()].endswith(".venv/bin/python ")]
    assert bare == [], [text[max(0, i - 40): i + 20] for i in bare]


def test_the_failure_message_shown_is_what_the_runner_says(package, workflow_runner):
    package("workflows", stages()[0]["workflows"])
    pid = workflow_runner.start(NAME, {"amount": 120})
    workflow_runner.send("wrong-channel", {"approved": True, "user": "alice"})
    with pytest.raises(AssertionError) as err:
        workflow_runner.assert_finished(pid, {"approved": True, "by": "alice"})
    shown = DOC.read_text().split("AssertionError: ", 1)[1].split("```", 1)[0].strip()
    actual = str(err.value).replace(pid, "3f2a…")
    assert actual == shown


def test_an_apps_tests_are_collected_by_the_suite(tmp_path):
    """pytest.ini collects, beside tests/, the tests of every top-level app: `startapp`'s
    tests.py, a tests/ package, test_*.py (and only tests)."""
    import os
    import shutil
    import subprocess

    repo = DOC.parents[1]
    shutil.copy(repo / "pytest.ini", tmp_path / "pytest.ini")
    files = {
        "tests/__init__.py": "", "tests/test_suite.py": "def test_suite(): pass\n",
        "alpha/__init__.py": "", "alpha/tests.py": "def test_alpha(): pass\n",
        "alpha/workflows.py": "def test_not_a_test_module(): pass\n",
        "beta/__init__.py": "", "beta/tests/__init__.py": "", "beta/tests/test_b.py": "def test_beta(): pass\n",
        "gamma/__init__.py": "", "gamma/test_c.py": "def test_gamma(): pass\n",
        "scripts/tool.py": "def test_not_collected(): pass\n",
    }
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    env = dict(os.environ, PYTHONPATH=str(repo))
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    collected = sorted(line for line in out.stdout.splitlines() if "::" in line)
    assert collected == [
        "alpha/tests.py::test_alpha", "beta/tests/test_b.py::test_beta", "gamma/test_c.py::test_gamma",
        "tests/test_suite.py::test_suite",
    ], out.stdout + out.stderr
