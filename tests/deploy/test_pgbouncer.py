"""PgBouncer in transaction pooling mode (docs/DEPLOY.md): DATABASE_DISABLE_SERVER_SIDE_CURSORS=1
makes every QuerySet.iterator() (the deploy check's) fetch without a server-side cursor, and a
worker and the deploy check work through a real pgbouncer in transaction mode.

PostgreSQL only (PgBouncer fronts PostgreSQL): on the SQLite pass these tests are skipped with that
reason; on the PostgreSQL pass (SLCT_REQUIRE_POSTGRES=1, as CI runs it, and .ci/run installs
pgbouncer) a missing pgbouncer fails instead of skipping.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.db import connection

from slct_workflows import deploy, services
from slct_workflows.models import ProcessInstance, ProcessStatus
from tests.conftest import ROOT, stop_process_group, wait_until

from .helpers import accepts, free_port

PGBOUNCER = shutil.which("pgbouncer") or next((p for p in ("/usr/sbin/pgbouncer",) if os.path.exists(p)), None)


@pytest.fixture
def postgres(db):
    if connection.vendor != "postgresql":
        pytest.skip("PgBouncer and server-side cursors are PostgreSQL's; this is the SQLite pass")


def _cursors() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_cursors")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.parametrize("disabled", [False, True])
def test_the_deploy_checks_iterator_holds_a_server_side_cursor_only_when_allowed(postgres, runner, monkeypatch, disabled):
    for n in range(3):
        runner.start("counter", {"channel": f"ssc-{n}"})
    monkeypatch.setitem(connection.settings_dict, "DISABLE_SERVER_SIDE_CURSORS", disabled)
    batches = deploy._batches(ProcessInstance.objects.filter(status=ProcessStatus.RUNNING).order_by("id"), size=1)
    first = next(batches)
    open_between_batches = _cursors()
    rest = list(batches)
    assert len(first) == 1 and sum(map(len, rest)) == 2
    # Between two batches a server-side cursor is open on the server (what PgBouncer's
    # transaction mode cannot keep); with the setting the rows were fetched without one.
    assert len(open_between_batches) == (0 if disabled else 1), open_between_batches
    assert deploy.check().checked == 3


# -- a real pgbouncer ---------------------------------------------------------------------------

@pytest.fixture
def pgbouncer(postgres, transactional_db):
    """pgbouncer on a free loopback port, transaction pooling, in front of the test database's
    server. Yields the DATABASE_URL of the test database through it."""
    if PGBOUNCER is None:
        if os.environ.get("SLCT_REQUIRE_POSTGRES") == "1":
            pytest.fail("pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    sd = connection.settings_dict
    port = free_port()
    # Readable by the postgres user: pgbouncer refuses to run as root, so as root it drops to it.
    workdir = Path(tempfile.mkdtemp(prefix="slct-pgbouncer-"))
    workdir.chmod(0o755)
    user = sd.get("USER") or "postgres"
    (workdir / "users.txt").write_text(f'"{user}" ""\n')
    (workdir / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={sd.get('HOST') or '127.0.0.1'} port={sd.get('PORT') or 5432}"
        f"{' password=' + sd['PASSWORD'] if sd.get('PASSWORD') else ''}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {workdir / 'users.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 4\nmax_client_conn = 100\n"
    )
    for f in workdir.iterdir():
        f.chmod(0o644)
    args = [PGBOUNCER, *(["-u", "postgres"] if os.geteuid() == 0 else []), str(workdir / "pgbouncer.ini")]
    with open(workdir / "pgbouncer.log", "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_until(lambda: accepts(port) or proc.poll() is not None, timeout=10, message="pgbouncer to listen")
        assert proc.poll() is None, (workdir / "pgbouncer.log").read_text()
        yield f"postgres://{user}@127.0.0.1:{port}/{sd['NAME']}"
    finally:
        stop_process_group(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def _through(url: str) -> dict[str, str]:
    return {"DATABASE_URL": url, "DATABASE_DISABLE_SERVER_SIDE_CURSORS": "1"}


def test_a_worker_through_pgbouncer_runs_processes(pgbouncer, worker_pool):
    # Two "hosts": the worker's reaches PostgreSQL through pgbouncer, this one (starting the
    # processes, as a web server would) directly; one Redis. Sixty-odd steps: well past psycopg's
    # prepare threshold, had anything prepared statements.
    worker_pool.start(1, extra_env=_through(pgbouncer))
    rounds = 30
    a = services.start_process("pingpong", {"role": "ping", "inbox": "pgb-a", "outbox": "pgb-b", "rounds": rounds})
    b = services.start_process("pingpong", {"role": "pong", "inbox": "pgb-b", "outbox": "pgb-a", "rounds": rounds})
    idle = services.start_process("counter", {"channel": "pgb-idle", "idle_seconds": 1}).process.id
    ids = [a.process.id, b.process.id, idle]
    try:
        wait_until(lambda: set(ProcessInstance.objects.filter(pk__in=ids).values_list("status", flat=True))
                   == {ProcessStatus.DONE}, timeout=60, message="ping-pong and a timer through pgbouncer")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker_pool.logs()}") from None
    assert worker_pool.alive() and "Traceback" not in worker_pool.logs(), worker_pool.logs()


def test_slct_check_through_pgbouncer_in_transaction_mode(pgbouncer):
    live = [services.start_process("counter", {"channel": f"pgb-check-{n}"}).process.id for n in range(3)]
    env = {**os.environ, **_through(pgbouncer), "DJANGO_SETTINGS_MODULE": "slct_project.settings"}
    result = subprocess.run([sys.executable, "manage.py", "slct_check", "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"checked": 3' in result.stdout and '"ok": true' in result.stdout
    # and the check still fails the deploy through pgbouncer when a process does not fit
    ProcessInstance.objects.filter(pk=live[0]).update(definition="gone-away")
    failed = subprocess.run([sys.executable, "manage.py", "slct_check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "definition 'gone-away' is not registered any more" in failed.stdout, failed.stderr
