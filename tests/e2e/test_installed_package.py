"""The package as a user gets it: the wheel built from this checkout, installed into a fresh
virtualenv, used by a new `django-admin startproject` site configured only with the README's
"Add to an existing project" blocks (read from the README itself), on this run's database and
Redis, with a real worker (`manage.py slct_worker`) and web server. A process is started and fed
through the REST API with a token made by `drf_create_token`, finishes with its output, and shows
in the admin.
"""
from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from pathlib import Path

import pytest

from tests.conftest import stop_process_group, wait_until

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Add to an existing project"
# What the distribution is built from (everything else stays out of the wheel anyway).
SOURCES = ["pyproject.toml", "README.md", "slct_workflows", "slack_integration"]
PASSWORD = "pkg-test-" + uuid.uuid4().hex

pytestmark = pytest.mark.timeout(300)


def readme_blocks() -> dict[str, str]:
    """The README section's Python blocks by their first line (`# settings.py`, `# urls.py`...)."""
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    return {block.splitlines()[0].lstrip("# ").strip(): block for block in blocks}


def run(args: list, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def build_wheel(tmp: Path) -> Path:
    # From a copy, so that the build's egg-info and build/ never land in the working tree (or
    # collide with a run beside this one).
    src = tmp / "src"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    run([sys.executable, "-m", "build", "--wheel", "--outdir", tmp / "dist", src], cwd=tmp, timeout=150)
    (wheel,) = (tmp / "dist").glob("django_slct-*.whl")
    return wheel


def check_wheel_contents(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"slct_workflows", "slack_integration"}, tops
    for expected in ["slct_workflows/templates/admin/slct_workflows/processinstance/change_form.html",
                     "slack_integration/templates/admin/slack_integration/pending_questions.html",
                     "slct_workflows/migrations/0001_initial.py", "slack_integration/migrations/0001_initial.py",
                     "slct_workflows/management/commands/slct_worker.py"]:
        assert expected in names, f"{expected} is not in the wheel"


class Database:
    """The new site's database: a file beside it on SQLite; on PostgreSQL a fresh database on the
    suite's server, dropped afterwards."""

    def __init__(self, tmp: Path) -> None:
        from django.db import connection

        self.vendor = connection.vendor
        self.params = dict(connection.settings_dict)
        self.name = f"slct_pkg_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.tmp = tmp

    def _admin_connection(self):
        import psycopg

        p = self.params
        return psycopg.connect(host=p.get("HOST") or "127.0.0.1", port=p.get("PORT") or 5432, user=p.get("USER") or None,
                               password=p.get("PASSWORD") or None, dbname="postgres", autocommit=True)

    def create(self) -> str:
        """The site's settings lines for it (before the README's blocks, as a site has its own)."""
        if self.vendor == "sqlite":
            return ""  # startproject's default: db.sqlite3 beside manage.py, in tmp
        with self._admin_connection() as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        p = self.params
        return ("DATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', "
                f"'NAME': {self.name!r}, 'HOST': {p.get('HOST') or '127.0.0.1'!r}, 'PORT': {str(p.get('PORT') or 5432)!r}, "
                f"'USER': {p.get('USER') or ''!r}, 'PASSWORD': {p.get('PASSWORD') or ''!r}}}}}\n")

    def drop(self) -> None:
        if self.vendor != "sqlite":
            with self._admin_connection() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def site_env(redis_url: str, queue: str) -> dict[str, str]:
    """This suite's environment without what points at the demo site (its settings, database,
    engine settings): the new site gets only its Redis and queue, as the README says."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLCT_", "DJANGO_", "DATABASE_", "REDIS_", "PYTHON", "PROMETHEUS_", "VIRTUAL_ENV"))}
    env.update(REDIS_URL=redis_url, SLCT_QUEUE=queue, PYTHONUNBUFFERED="1")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        self.token = token
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                                  NoRedirect())

    def request(self, method: str, path: str, body=None, headers: dict | None = None, form: dict | None = None):
        headers = dict(headers or {})
        data = None
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        if form is not None:
            data, headers["Content-Type"] = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=15) as resp:
                return resp.status, resp.read().decode(), resp.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), e.headers

    def json(self, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, dict]:
        status, text, _ = self.request(method, path, body, headers)
        try:
            return status, json.loads(text) if text else {}
        except ValueError:  # an error page: keep it for the assertion's message
            return status, {"not json": text[-2000:]}

    def cookie(self, name: str) -> str:
        jar = next(h.cookiejar for h in self.opener.handlers if isinstance(h, urllib.request.HTTPCookieProcessor))
        return next(c.value for c in jar if c.name == name)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 302 is an answer to assert, not to follow


@pytest.fixture
def package_site(tmp_path, redis_conn):
    """A new site using the installed wheel; yields (site dir, python of its venv, env)."""
    queue = f"slct-pkg-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    redis_url = _redis_url()
    started = time.monotonic()
    wheel = build_wheel(tmp_path)
    check_wheel_contents(wheel)
    venv = tmp_path / "venv"
    # A fresh virtualenv without pip of its own (ensurepip alone takes 10-25 s): this suite's pip
    # installs into it; --no-compile skips byte-compiling Django (Python compiles what it imports).
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    python = venv / "bin" / "python"
    db = Database(tmp_path)
    extras = "metrics" + (",postgres" if db.vendor != "sqlite" else "")
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile", "--disable-pip-version-check",
         f"{wheel}[{extras}]"], cwd=tmp_path, timeout=150)
    assert time.monotonic() - started < 150, "building and installing the package took too long"

    site = tmp_path / "site"
    site.mkdir()
    env = site_env(redis_url, queue)
    run([venv / "bin" / "django-admin", "startproject", "mysite", site], cwd=tmp_path, env=env)
    run([python, "manage.py", "startapp", "greetings"], cwd=site, env=env)
    blocks = readme_blocks()
    (site / "greetings" / "workflows.py").write_text(blocks["yourapp/workflows.py"])
    (site / "mysite" / "urls.py").write_text(blocks["urls.py"])
    settings_py = site / "mysite" / "settings.py"
    own_database = db.create()
    try:
        sqlite = blocks["settings.py, on SQLite"] if db.vendor == "sqlite" else ""
        settings_py.write_text(settings_py.read_text() + "\n" + own_database + blocks["settings.py"] + sqlite
                               + '\nINSTALLED_APPS += ["greetings"]\n')
        yield site, python, env
    finally:
        db.drop()
        for key in redis_conn.scan_iter(match=f"*{queue}*", count=1000):
            redis_conn.delete(key)


def _redis_url() -> str:
    from django.conf import settings

    return settings.RQ_QUEUES[settings.SLCT_QUEUE]["URL"]


def test_installed_package_runs_a_workflow_in_a_new_site(package_site, tmp_path):
    site, python, env = package_site
    run([python, "manage.py", "migrate", "--noinput"], cwd=site, env=env)
    port = free_port()
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("worker", "web")}
    worker = subprocess.Popen([python, "manage.py", "slct_worker", "--with-scheduler"], cwd=site, env=env,
                              stdout=logs["worker"], stderr=subprocess.STDOUT, start_new_session=True)
    web = subprocess.Popen([python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"], cwd=site, env=env,
                           stdout=logs["web"], stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # The user and the token while the worker and the web server start.
        run([python, "manage.py", "createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com"],
            cwd=site, env={**env, "DJANGO_SUPERUSER_PASSWORD": PASSWORD})
        created = run([python, "manage.py", "drf_create_token", "admin"], cwd=site, env=env)
        token = re.search(r"Generated token (\S+) for user admin", created).group(1)
        base = f"http://127.0.0.1:{port}"
        api = Client(base, token)

        def web_up() -> bool:
            try:
                return Client(base).request("GET", "/healthz")[0] == 200
            except OSError:
                return False

        wait_until(web_up, timeout=30, message="the new site's web server")
        pid, chan = f"greet-{uuid.uuid4().hex[:8]}", f"names-{uuid.uuid4().hex[:8]}"
        status, body = api.json("POST", "/api/processes/", {"definition": "greeting", "id": pid, "input": {"channel": chan}})
        assert status == 201, body
        # The worker runs the first step, whose receive makes the channel (sends never create one).
        wait_until(lambda: api.json("GET", f"/api/channels/{chan}/")[0] == 200, timeout=30,
                   message="the worker to run the process's first step")
        status, body = api.json("POST", f"/api/channels/{chan}/send/", {"value": "Ada"}, {"Idempotency-Key": f"{pid}-name"})
        assert status == 200 and body["status"] == "delivered", body
        wait_until(lambda: api.json("GET", f"/api/processes/{pid}/")[1].get("status") == "done", timeout=30,
                   message="the process to finish")
        assert api.json("GET", f"/api/processes/{pid}/")[1]["output"] == {"greeting": "hello, Ada"}
        assert api.json("GET", "/api/schema/?format=json")[0] == 200

        anonymous = Client(base)
        status, _, headers = anonymous.request("GET", "/django-rq/")
        assert status == 302 and "/admin/login/" in headers["Location"], "django-rq must need a login"
        # slack_integration is not installed (nor slack_sdk): the include leaves its URLs out.
        assert anonymous.request("POST", "/slack/interactivity/")[0] == 404

        admin = Client(base)
        assert admin.request("GET", "/admin/login/")[0] == 200
        status, _, headers = admin.request("POST", "/admin/login/", headers={"Referer": base + "/admin/login/"}, form={
            "username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": admin.cookie("csrftoken"),
            "next": "/admin/"})
        assert status == 302 and headers["Location"] == "/admin/", "the admin login failed"
        status, page, _ = admin.request("GET", f"/admin/slct_workflows/processinstance/{pid}/change/")
        assert status == 200 and pid in page and "hello, Ada" in page, page[-2000:]
    except BaseException:
        for name, log in logs.items():
            log.flush()
            print(f"--- {name} ---\n" + (tmp_path / f"{name}.log").read_text(errors="replace")[-4000:])
        raise
    finally:
        stop_process_group(web)
        stop_process_group(worker)
        for log in logs.values():
            log.close()


def test_the_development_environment_pins_what_the_package_declares():
    """requirements.txt (what the suite runs on) holds every dependency of the package and its
    extras at a version the package accepts: the suite tests what users install."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    declared += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    pinned = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            (spec,) = req.specifier
            pinned[canonicalize_name(req.name)] = spec.version
    for req in declared:
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} (pyproject.toml) is not in requirements.txt"
        assert req.specifier.contains(pinned[name]), f"requirements.txt pins {req.name}=={pinned[name]}, outside {req}"
