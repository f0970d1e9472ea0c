"""The architecture as import rules (.importlinter, docs/ARCHITECTURE.md): no cycles between
sibling modules or packages, interfaces and integrations never import the runtime's internals,
the runtime imports nothing above it, the engine app never imports the Slack integration, and
the pure core (select rules, hooks, policies) needs no Django."""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lint(config: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), str(config), "--no-cache"],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


def test_the_import_contracts_hold():
    result = lint(ROOT / ".importlinter")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout
    contracts = [s for s in _sections(ROOT / ".importlinter") if s.startswith("importlinter:contract:")]
    assert result.stdout.count(" KEPT") == len(contracts) >= 5, result.stdout


def _sections(path: Path) -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(path)
    return parser.sections()


def test_a_cycle_or_an_interface_reaching_into_the_runtime_is_caught(tmp_path):
    """The contracts have teeth: a checker pointed at the same rules with one more import
    (the admin importing the engine; the engine importing the services) breaks them."""
    pkg = tmp_path / "demo"
    (pkg / "runtime").mkdir(parents=True)
    for name, text in {
        "__init__.py": "",
        "runtime/__init__.py": "",
        "runtime/engine.py": "from demo import services\n",  # runtime -> services -> runtime: a cycle
        "services.py": "from demo.runtime import engine\n",
        "admin.py": "from demo.runtime import engine\n",  # an interface reaching into the internals
    }.items():
        (pkg / name).write_text(text)
    config = tmp_path / ".importlinter"
    config.write_text(
        "[importlinter]\nroot_packages =\n    demo\n\n"
        "[importlinter:contract:c]\nname = cycles\ntype = acyclic_siblings\nancestors =\n    demo\n\n"
        "[importlinter:contract:i]\nname = interfaces\ntype = forbidden\nsource_modules =\n    demo.admin\n"
        "forbidden_modules =\n    demo.runtime.engine\nallow_indirect_imports = True\n"
    )
    result = lint(config, cwd=tmp_path)
    assert result.returncode != 0
    assert result.stdout.count("BROKEN") == 2, result.stdout
