"""The systemd units and environment file of docs/deploy/ (docs/DEPLOY.md), run as written.

Each unit's ExecStart runs here with docs/deploy/slct.env as its environment, only the paths
(/srv/slct, /run/slct-metrics), the secrets, the ports and the database and Redis addresses
replaced: two worker instances and gunicorn on the test database and Redis (the
processes of two hosts share one PostgreSQL/SQLite and one Redis the same way), the metrics server,
and collectstatic for the files the reverse proxy serves.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slct_workflows import services
from slct_workflows.models import ProcessInstance, ProcessStatus
from tests.conftest import ROOT, _worker_env, stop_process_group, wait_until
from tests.security.test_production_settings import STRONG_KEY

from .helpers import free_port, http_get

UNITS = ROOT / "docs" / "deploy"
TOKEN = "test-metrics-token-0123456789abcdef"
HOST = "slct.example.com"


def unit(name: str) -> dict[str, list[str]]:
    """`Section.Key` -> values (keys may repeat), comments and blank lines skipped."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


def env_file() -> dict[str, str]:
    env = {}
    for line in (UNITS / "slct.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


class Host:
    """The units of one host, run from their ExecStart lines with the host's environment."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.metrics_dir = tmp / "slct-metrics"
        self.web_port, self.metrics_port = free_port(), free_port()
        test = _worker_env()
        self.env = {
            **env_file(),
            "PATH": test["PATH"], "HOME": str(tmp), "PYTHONUNBUFFERED": "1", "DJANGO_SETTINGS_MODULE": "slct_project.settings",
            "SECRET_KEY": STRONG_KEY, "SLCT_METRICS_TOKEN": TOKEN,
            "DATABASE_URL": test["DATABASE_URL"], "REDIS_URL": test["REDIS_URL"], "SLCT_QUEUE": test["SLCT_QUEUE"],
            "SLCT_DATA_DIR": str(tmp / "data"), "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            "GUNICORN_BIND": f"127.0.0.1:{self.web_port}", "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2",
        }
        self.procs: list[subprocess.Popen] = []

    def command(self, line: str, instance: str = "") -> list[str]:
        line = (line.replace("/srv/slct/.venv/bin/python", sys.executable)
                .replace("/srv/slct/.venv/bin/gunicorn", str(Path(sys.executable).with_name("gunicorn")))
                .replace("/run/slct-metrics", str(self.metrics_dir))
                .replace("chown slct:slct", "chown $(id -u):$(id -g)")
                .replace("--port 9108", f"--port {self.metrics_port} --addr 127.0.0.1")
                .replace("%i", instance))
        assert "/srv/slct" not in line, line
        return shlex.split(line)

    def workdir(self, spec: dict[str, list[str]]) -> Path:
        [workdir] = spec["Service.WorkingDirectory"]
        assert workdir == "/srv/slct" and spec["Service.EnvironmentFile"] == ["/etc/slct/slct.env"]
        return ROOT

    def run_once(self, name: str) -> None:
        spec = unit(name)
        assert spec["Service.Type"] == ["oneshot"]
        [line] = spec["Service.ExecStart"]
        subprocess.run(self.command(line), check=True, env=self.env, timeout=30)

    def start(self, name: str, instance: str = "") -> subprocess.Popen:
        spec = unit(name)
        [line] = spec["Service.ExecStart"]
        with open(self.tmp / f"{name}{instance}.log", "ab") as log:
            proc = subprocess.Popen(self.command(line, instance), cwd=self.workdir(spec), env=self.env,
                                    stdout=log, stderr=log, start_new_session=True)
        proc.unit = spec  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-3000:]}" for f in sorted(self.tmp.glob("*.log")))

    def wait(self, predicate, what: str, timeout: float = 30) -> None:
        try:
            wait_until(predicate, timeout=timeout, message=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def get(self, port: int, path: str, **headers: str) -> tuple[int, str]:
        return http_get(port, path, Host=HOST, **headers)


def _steps(metrics_text: str) -> float:
    return sum(float(v) for v in re.findall(r"^slct_steps_total(?:\{[^}]*\})? (\S+)$", metrics_text, re.M))


def test_web_two_workers_and_metrics_from_the_units(transactional_db, clean_redis, tmp_path):
    host = Host(tmp_path)
    host.run_once("slct-prepare.service")
    assert host.metrics_dir.is_dir()
    collect = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput"], cwd=ROOT, env=host.env,
                             capture_output=True, text=True, timeout=120)
    assert collect.returncode == 0, collect.stderr
    static_root = tmp_path / "data" / "static"
    try:
        web = host.start("slct-web.service")
        workers = [host.start("slct-worker@.service", str(i)) for i in (1, 2)]
        metrics = host.start("slct-metrics.service")

        rounds = 10
        a = services.start_process("pingpong", {"role": "ping", "inbox": "unit-a", "outbox": "unit-b", "rounds": rounds})
        b = services.start_process("pingpong", {"role": "pong", "inbox": "unit-b", "outbox": "unit-a", "rounds": rounds})
        ids = [a.process.id, b.process.id]
        host.wait(lambda: set(ProcessInstance.objects.filter(pk__in=ids).values_list("status", flat=True))
                  == {ProcessStatus.DONE}, "ping-pong on the units' workers", timeout=60)

        # gunicorn answers, and /readyz sees both workers and a timer-loop leader among them
        host.wait(lambda: host.get(host.web_port, "/healthz")[0] == 200, "gunicorn")
        host.wait(lambda: host.get(host.web_port, "/readyz")[0] == 200, "/readyz")
        assert '"live": 2' in host.get(host.web_port, "/readyz")[1]
        # the admin page is served (over the proxy's https) and links CSS that collectstatic wrote
        status, page = host.get(host.web_port, "/admin/login/", **{"X-Forwarded-Proto": "https"})
        assert status == 200 and 'href="/static/admin/css/base.css"' in page
        assert (static_root / "admin" / "css" / "base.css").stat().st_size > 1000
        # both servers show the workers' steps, and only with the token
        for port in (host.web_port, host.metrics_port):
            host.wait(lambda: host.get(port, "/metrics", Authorization=f"Bearer {TOKEN}")[0] == 200, f"/metrics on {port}")
            assert _steps(host.get(port, "/metrics", Authorization=f"Bearer {TOKEN}")[1]) >= 2 * rounds
            assert host.get(port, "/metrics")[0] == 403

        # stopping as systemd does (KillSignal, within TimeoutStopSec): each exits cleanly
        for proc in [*workers, web, metrics]:
            timeout = float(proc.unit.get("Service.TimeoutStopSec", ["90"])[0])
            signal_name = proc.unit.get("Service.KillSignal", ["SIGTERM"])[0]
            assert signal_name == "SIGTERM"
            proc.terminate()
            assert proc.wait(timeout=timeout) == 0, host.logs()
    finally:
        for proc in host.procs:
            stop_process_group(proc)


def test_the_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package)")
    names = sorted(p.name for p in UNITS.glob("*.service"))
    assert names == ["slct-metrics.service", "slct-prepare.service", "slct-web.service", "slct-worker@.service"]
    for name in names:
        text = (UNITS / name).read_text()
        text = (text.replace("/srv/slct/.venv/bin/python", sys.executable)
                .replace("/srv/slct/.venv/bin/gunicorn", str(Path(sys.executable).with_name("gunicorn")))
                .replace("/srv/slct", str(ROOT)))
        (tmp_path / name).write_text(text)
    units = [str(tmp_path / n) for n in names if "@" not in n] + [str(tmp_path / "slct-worker@1.service")]
    shutil.copy(tmp_path / "slct-worker@.service", tmp_path / "slct-worker@1.service")
    result = subprocess.run([analyze, "verify", "--man=no", *units], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Unknown" not in result.stderr and "fatal" not in result.stderr, result.stderr
