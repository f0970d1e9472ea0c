"""The first run (issue 16): a stable admin password kept private, the embedded Redis refusing a
Redis it did not start, the hint of an "unknown process definition" in a worker, a worker's log
without a line per job (a summary instead), and a worker that reloads on code changes."""
from __future__ import annotations

import io
import logging
import os
import re
import stat
import subprocess
import sys
import time

import pytest
from django.core.management import call_command

from tests.conftest import ROOT, _worker_env, stop_process_group, wait_until
from tests.reliability.conftest import _free_port


# -- the admin password ---------------------------------------------------------------------------

def _login(out: str) -> str:
    match = re.search(r"admin login: admin / (\S+)", out) or re.search(r"login:\s+admin / (\S+)", out)
    assert match, out
    return match.group(1)


def test_the_admin_password_is_created_once_kept_private_and_the_same_at_every_start(db, tmp_path, monkeypatch):
    from django.contrib.auth import get_user_model

    monkeypatch.setenv("SLCT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SLCT_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("SLCT_ADMIN_USER", raising=False)
    first, second = io.StringIO(), io.StringIO()
    call_command("slct_admin_user", stdout=first)
    call_command("slct_admin_user", stdout=second)
    password = _login(first.getvalue())
    assert password == _login(second.getvalue()) and len(password) >= 12

    stored = tmp_path / "data" / "admin-password"
    assert stored.read_text().strip() == password
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert not list(stored.parent.glob(".admin-password.*"))  # no temporary file left behind
    assert get_user_model().objects.get(username="admin").check_password(password)

    # run.sh's box: the login and the token, the URLs on its port, the last thing it prints.
    boxed = io.StringIO()
    call_command("slct_admin_user", "--box", "--url", "http://127.0.0.1:8123", stdout=boxed)
    lines = boxed.getvalue().strip().splitlines()
    assert lines[0].startswith("+--") and lines[-1] == lines[0]
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines[1:-1])
    assert _login(boxed.getvalue()) == password and "http://127.0.0.1:8123/admin/" in boxed.getvalue()
    assert "export TOKEN=" in boxed.getvalue()

    # SLCT_ADMIN_PASSWORD wins and is not stored.
    monkeypatch.setenv("SLCT_ADMIN_PASSWORD", "given-password-123")
    given = io.StringIO()
    call_command("slct_admin_user", stdout=given)
    assert _login(given.getvalue()) == "given-password-123"
    assert stored.read_text().strip() == password


# -- the embedded Redis -------------------------------------------------------------------------

def _start_redis(port: int, workdir, *extra: str) -> subprocess.Popen:
    from slct_project import embedded_redis

    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([embedded_redis.executable(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: embedded_redis._ping(port), timeout=10, message=f"redis-server on {port}")
    return proc


def test_the_embedded_redis_refuses_a_redis_it_did_not_start_and_says_what_to_do(tmp_path, monkeypatch):
    from slct_project import embedded_redis

    monkeypatch.setenv("SLCT_DATA_DIR", str(tmp_path / "data"))
    port = _free_port()
    foreign = _start_redis(port, tmp_path / "another-app")
    try:
        with pytest.raises(embedded_redis.ForeignRedis) as refused:
            embedded_redis.ensure(port)
        message = str(refused.value)
        assert f"port {port}" in message and "did not start" in message
        assert "SLCT_EMBEDDED_REDIS_PORT" in message and f"REDIS_URL=redis://127.0.0.1:{port}/0" in message
        assert f"pid {foreign.pid}" in message

        # What run.sh and test.sh run: exit status 2 and the message, no URL on stdout.
        env = {**os.environ, "SLCT_DATA_DIR": str(tmp_path / "data"), "SLCT_EMBEDDED_REDIS_PORT": str(port)}
        cli = subprocess.run([sys.executable, "-m", "slct_project.embedded_redis"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 2 and cli.stdout == "" and "SLCT_EMBEDDED_REDIS_PORT" in cli.stderr
        # `stop` leaves another application's Redis alone.
        embedded_redis.stop(port)
        assert embedded_redis._ping(port)
    finally:
        foreign.kill()
        foreign.wait(timeout=10)


def test_the_embedded_redis_it_started_is_shared_by_later_runs(tmp_path, monkeypatch):
    from slct_project import embedded_redis

    monkeypatch.setenv("SLCT_DATA_DIR", str(tmp_path / "data"))
    port = _free_port()
    try:
        assert embedded_redis.ensure(port) == f"redis://127.0.0.1:{port}/0"
        assert embedded_redis.is_ours(port)
        assert embedded_redis.ensure(port) == f"redis://127.0.0.1:{port}/0"  # adopted, not refused
        pidfile = tmp_path / "data" / "redis" / f"redis-{port}.pid"
        assert pidfile.exists()
    finally:
        embedded_redis.stop(port)
    wait_until(lambda: not embedded_redis._ping(port), timeout=10, message="the embedded Redis to stop")


# -- "unknown process definition" ---------------------------------------------------------------

def test_an_unknown_definition_in_a_worker_says_the_worker_may_run_older_code(monkeypatch):
    from slct_workflows import definitions
    from slct_workflows.errors import NotFound

    registry = definitions.registry
    monkeypatch.setattr(definitions, "in_worker", False)
    with pytest.raises(NotFound) as web:
        registry.get("dx-nope")
    assert str(web.value) == "unknown process definition 'dx-nope'"  # the API's answer stays as it was

    monkeypatch.setattr(definitions, "in_worker", True)
    for call in (lambda: registry.get("dx-nope"), lambda: registry.for_process("dx-nope", "")):
        with pytest.raises(NotFound) as worker:
            call()
        text = str(worker.value)
        assert text.startswith("unknown process definition 'dx-nope'")
        assert "older code than the web server" in text and "restart the worker" in text
        assert "--reload" in text


# -- the worker's log ---------------------------------------------------------------------------

class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_rq_per_job_lines_are_debug_and_the_rest_stays_info():
    from slct_workflows.workers.worker import RoutineAtDebug

    logger = logging.getLogger("dx-test-rq-worker")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    capture = _Capture()
    logger.addHandler(capture)
    try:
        log = RoutineAtDebug(logger)
        log.info("Worker %s: %s: %s (%s)", "w", "slct", "slct_workflows.jobs.wake(1)", "id")
        log.info("Worker %s: %s: %s (%s)", "w", "slct", "Job OK", "id")
        log.info("Worker %s: job %s result discarded immediately", "w", "id")
        log.info("Successfully completed %s job in %ss on worker %s", "slct_workflows.jobs.sweep()", 0.01, "w")
        log.info("Worker %s: started with PID %d, version %s", "w", 1, "3")
        log.warning("Worker %s: cold shut down", "w")
        assert log.level == logging.DEBUG  # RQ reads it
    finally:
        logger.removeHandler(capture)
    levels = [(r.levelno, r.getMessage()) for r in capture.records]
    assert [lvl for lvl, _ in levels] == [logging.DEBUG] * 4 + [logging.INFO, logging.WARNING], levels


def test_the_activity_summary_says_what_happened_only_when_something_did():
    from slct_workflows.workers.worker import Activity

    activity = Activity()
    activity.add(sweeps_ok=3)
    assert activity.take(0.0) is None and activity.take(-1) is None  # 0: never
    activity.since -= 120
    assert activity.take(60) is None  # only routine sweeps: nothing to say
    activity.add(jobs=4, steps=9, timers=2, sweeps_ok=1)
    assert activity.take(60) is None  # the minute is not over
    activity.since -= 61
    line = activity.take(60)
    assert line is not None and "9 steps in 4 jobs, 2 timers fired, 1 sweeps ok" in line
    activity.since -= 61
    assert activity.take(60) is None  # counted from zero again


@pytest.mark.e2e
def test_a_real_worker_logs_no_line_per_job_at_info_and_a_summary(worker_pool):
    from slct_workflows import services
    from slct_workflows.models import ProcessInstance

    worker_pool.start(1, extra_env={"SLCT_LOG_SUMMARY_SECONDS": "1"})
    rounds = 10
    a = services.start_process("pingpong", {"role": "ping", "inbox": "dx-pp-a", "outbox": "dx-pp-b", "rounds": rounds})
    b = services.start_process("pingpong", {"role": "pong", "inbox": "dx-pp-b", "outbox": "dx-pp-a", "rounds": rounds})
    done = lambda: all(ProcessInstance.objects.get(pk=x.process.id).status == "done" for x in (a, b))  # noqa: E731
    wait_until(done, timeout=60, message=f"ping-pong to finish; logs:\n{worker_pool.logs()}")
    wait_until(lambda: " steps in " in worker_pool.logs(), timeout=30,
               message=f"the worker's summary line; logs:\n{worker_pool.logs()}")
    logs = worker_pool.logs()
    assert "started with PID" in logs  # INFO is on: the start is there
    for routine in ("Job OK", "slct_workflows.jobs.wake(", "result discarded", "Successfully completed"):
        assert routine not in logs, (routine, logs)
    steps = sum(int(n) for n in re.findall(r"(\d+) steps in \d+ jobs", logs))
    assert steps >= rounds, logs


# -- the reloading worker -----------------------------------------------------------------------

WORKFLOW_A = '''
from dataclasses import dataclass
from slct_workflows import Process, register


@register("dx-reload-a")
@dataclass
class ReloadA:
    def Main_Start(self, p: Process, input=None):
        p.finish({"v": "a"})
'''

WORKFLOW_B = WORKFLOW_A + '''

@register("dx-reload-b")
@dataclass
class ReloadB:
    def Main_Start(self, p: Process, input=None):
        p.finish({"v": "b"})
'''

WORKFLOW_C = WORKFLOW_B + '''

@register("dx-reload-c")
@dataclass
class ReloadC:
    def Main_Start(self, p: Process, input=None):
        p.finish({"v": "c"})
'''


@pytest.mark.e2e
def test_the_reloading_worker_runs_a_workflow_added_while_it_runs(worker_pool, workflow_registry, tmp_path):
    import importlib.util

    from django.conf import settings

    from slct_workflows import services
    from slct_workflows.models import ProcessInstance

    module = f"dx_reload_wf_{os.getpid()}_{time.time_ns()}"
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    source = code_dir / f"{module}.py"
    source.write_text(WORKFLOW_A)
    env = _worker_env()
    env["SLCT_WORKFLOW_MODULES"] = ",".join(x for x in (env.get("SLCT_WORKFLOW_MODULES", ""), module) if x)
    env["PYTHONPATH"] = os.pathsep.join(x for x in (str(code_dir), env.get("PYTHONPATH", "")) if x)
    log_path = tmp_path / "reload.log"
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "slct_worker", settings.SLCT_QUEUE,
                             "--with-scheduler", "--reload"], cwd=ROOT, env=env, stdout=open(log_path, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    logs = lambda: log_path.read_text(errors="replace")[-20000:]  # noqa: E731
    shift = [0]

    def write(code: str, *, load: bool = True) -> None:
        source.write_text(code)
        shift[0] += 2
        later = time.time() + shift[0]  # a new mtime even within the file system's resolution
        os.utime(source, (later, later))
        if load:  # the web side (this test) knows the new definitions at once
            spec = importlib.util.spec_from_file_location(module, source)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))

    def runs(definition: str, value: str) -> None:
        started = services.start_process(definition, {}).process.id
        wait_until(lambda: ProcessInstance.objects.get(pk=started).status == "done", timeout=60,
                   message=f"the reloaded worker to run {definition}\n{logs()}")
        assert ProcessInstance.objects.get(pk=started).output == {"v": value}

    try:
        wait_until(lambda: "Listening on" in logs(), timeout=60, message=f"the worker to start\n{logs()}")
        write(WORKFLOW_B)
        wait_until(lambda: "changed; restarting the worker" in logs(), timeout=30,
                   message=f"the worker to notice the change\n{logs()}")
        runs("dx-reload-b", "b")
        assert logs().count("Listening on") >= 2

        # Broken code: the worker waits for the fix (no crash loop), then runs the fixed code.
        write(WORKFLOW_B + "\ndef broken(:\n", load=False)
        wait_until(lambda: "restarting it at the next change" in logs(), timeout=60,
                   message=f"the worker to wait for a fix\n{logs()}")
        assert proc.poll() is None
        write(WORKFLOW_C)
        runs("dx-reload-c", "c")
    finally:
        stop_process_group(proc, timeout=30)


# -- a shell with the run command's environment -------------------------------------------------

def test_run_sh_shell_has_the_run_commands_environment(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DEBUG")}
    env.update(SLCT_DATA_DIR=str(tmp_path / "data"), REDIS_URL="redis://127.0.0.1:6390/5")
    code = "import os; from django.conf import settings; print(os.environ['REDIS_URL'], settings.DEBUG)"
    shell = subprocess.run(["./run.sh", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert shell.returncode == 0, shell.stderr
    assert "redis://127.0.0.1:6390/5 True" in shell.stdout
    wrong = subprocess.run(["./run.sh", "nonsense"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and "usage: ./run.sh" in wrong.stderr
