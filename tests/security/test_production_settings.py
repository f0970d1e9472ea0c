"""Production is the default: DEBUG off unless asked for, secrets and hosts required, HTTPS on.

Each case runs Django in a subprocess with an environment built from nothing, so what the settings
do at import time is what is tested (the test process itself runs in development mode).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STRONG_KEY = "k7#vQ2!mZp9@xL4$wR8^tN1&yB6*cF3(hJ0)dG5-sE=uA+oI_eK"  # 52 characters, many distinct
DEV_KEY = "dev-insecure-slct-secret-key-change-me-in-production"  # the old default every checkout had


def documented_production_env() -> dict[str, str]:
    """The environment docs/SECURITY.md documents for production (with a real key put in)."""
    text = (ROOT / "docs" / "SECURITY.md").read_text()
    block = re.search(r"<!-- production-env[^>]*-->\s*```sh\n(.*?)```", text, re.S)
    assert block, "docs/SECURITY.md lost its production environment block"
    env = {}
    for line in block.group(1).splitlines():
        line = line.split("#", 1)[0].strip() if not line.startswith("REDIS_URL") else line.strip()
        if line:
            name, _, value = line.partition("=")
            env[name] = value.strip()
    assert env["DEBUG"] == "0" and "SECRET_KEY" in env and env["ALLOWED_HOSTS"]
    env["SECRET_KEY"] = STRONG_KEY
    return env


def django_env(tmp_path: Path, **env: str) -> dict[str, str]:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "DJANGO_SETTINGS_MODULE": "slct_project.settings",
        "SLCT_DATA_DIR": str(tmp_path / "data"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return {**base, **{k: v for k, v in env.items() if v is not None}}


def run_django(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    prog = "import django\ndjango.setup()\nfrom django.conf import settings\n" + code
    return subprocess.run([sys.executable, "-c", prog], cwd=ROOT, env=django_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=120)


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=django_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=180)


def refused(result: subprocess.CompletedProcess, variable: str) -> str:
    assert result.returncode != 0, result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured:") and variable in last, result.stderr[-2000:]
    return last


# -- refusing to start --------------------------------------------------------------------------

def test_without_debug_set_it_is_production_and_needs_a_secret_key(tmp_path):
    last = refused(run_django(tmp_path, "print(settings.DEBUG)"), "SECRET_KEY")
    assert "SECRET_KEY is not set and DEBUG is off" in last and "get_random_secret_key" in last
    # manage.py too, and gunicorn's app: the same settings module
    refused(manage(tmp_path, "check"), "SECRET_KEY")


@pytest.mark.parametrize("key,why", [
    (DEV_KEY, "published development key"),
    ("short-but-varied-key-0123456789", "characters long"),
    ("ab" * 40, "distinct characters"),
    ("django-insecure-" + STRONG_KEY, "django-insecure-"),
])
def test_a_weak_or_public_secret_key_is_refused_in_production(tmp_path, key, why):
    last = refused(run_django(tmp_path, "", DEBUG="0", SECRET_KEY=key, ALLOWED_HOSTS="slct.example.com"),
                   "SECRET_KEY")
    assert why in last


def test_a_weak_fallback_key_is_refused_in_production(tmp_path):
    refused(run_django(tmp_path, "", DEBUG="0", SECRET_KEY=STRONG_KEY, SECRET_KEY_FALLBACKS=f"{STRONG_KEY[::-1]} short",
                       ALLOWED_HOSTS="slct.example.com"), "SECRET_KEY_FALLBACKS")


@pytest.mark.parametrize("hosts", [None, "", " , "])
def test_empty_allowed_hosts_is_refused_in_production(tmp_path, hosts):
    last = refused(run_django(tmp_path, "", DEBUG="0", SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS=hosts), "ALLOWED_HOSTS")
    assert "ALLOWED_HOSTS is empty and DEBUG is off" in last


def test_a_csrf_origin_without_scheme_is_refused(tmp_path):
    refused(run_django(tmp_path, "", DEBUG="1", CSRF_TRUSTED_ORIGINS="slct.example.com"), "CSRF_TRUSTED_ORIGINS")


def test_a_malformed_boolean_is_refused(tmp_path):
    refused(run_django(tmp_path, "", DEBUG="maybe"), "DEBUG")


# -- the deploy check -------------------------------------------------------------------------

def test_the_deploy_check_passes_without_warnings_under_the_documented_production_env(tmp_path):
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **documented_production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_the_deploy_check_is_not_toothless(tmp_path):
    """The same check fails in development mode: it really looks at these settings."""
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", DEBUG="1")
    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W009", "security.W012", "security.W016", "security.W018"):
        assert check in result.stderr, check


def test_settings_under_the_documented_production_env(tmp_path):
    code = """
import json
db = settings.DATABASES["default"]
print(json.dumps({
    "DEBUG": settings.DEBUG, "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "CSRF_TRUSTED_ORIGINS": settings.CSRF_TRUSTED_ORIGINS,
    "SESSION_COOKIE_SECURE": settings.SESSION_COOKIE_SECURE, "CSRF_COOKIE_SECURE": settings.CSRF_COOKIE_SECURE,
    "SECURE_SSL_REDIRECT": settings.SECURE_SSL_REDIRECT, "SECURE_HSTS_SECONDS": settings.SECURE_HSTS_SECONDS,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": settings.SECURE_HSTS_INCLUDE_SUBDOMAINS,
    "SECURE_HSTS_PRELOAD": settings.SECURE_HSTS_PRELOAD,
    "SECURE_PROXY_SSL_HEADER": settings.SECURE_PROXY_SSL_HEADER,
    "CONN_MAX_AGE": db["CONN_MAX_AGE"], "CONN_HEALTH_CHECKS": db["CONN_HEALTH_CHECKS"], "ENGINE": db["ENGINE"],
}))
"""
    result = run_django(tmp_path, code, **documented_production_env())
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout)
    assert got == {
        "DEBUG": False, "ALLOWED_HOSTS": ["slct.example.com"], "CSRF_TRUSTED_ORIGINS": ["https://slct.example.com"],
        "SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True, "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000, "SECURE_HSTS_INCLUDE_SUBDOMAINS": True, "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True, "ENGINE": "django.db.backends.postgresql",
    }


def test_https_redirect_spares_the_probes_and_trusts_the_proxy_header(tmp_path):
    code = """
import json
from django.test import Client
c = Client(raise_request_exception=False, HTTP_HOST="slct.example.com")
out = {}
for path in ["/admin/login/", "/api/", "/healthz", "/readyz", "/metrics", "/healthz/"]:
    r = c.get(path)
    out[path] = [r.status_code, r.headers.get("Location", "")]
r = c.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
out["proxied"] = [r.status_code, r.headers.get("Strict-Transport-Security", "")]
print(json.dumps(out))
"""
    env = {**documented_production_env(), "DATABASE_URL": "", "REDIS_URL": "redis://127.0.0.1:1/0"}
    result = run_django(tmp_path, code, **env)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["/admin/login/"] == [301, "https://slct.example.com/admin/login/"]
    assert got["/api/"] == [301, "https://slct.example.com/api/"]
    for probe in ("/healthz", "/readyz", "/metrics", "/healthz/"):
        assert got[probe][0] != 301, (probe, got[probe])
    status, hsts = got["proxied"]
    assert status != 301 and hsts == "max-age=31536000; includeSubDomains; preload"


# -- development mode and the scripts that ask for it --------------------------------------------

def test_development_defaults(tmp_path):
    code = """
import json
db = settings.DATABASES["default"]
print(json.dumps([settings.DEBUG, settings.ALLOWED_HOSTS, settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE,
                  settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS, db["CONN_MAX_AGE"], db["CONN_HEALTH_CHECKS"],
                  settings.SLCT_WORKER_CONN_MAX_AGE, len(settings.SECRET_KEY) > 0]))
"""
    result = run_django(tmp_path, code, DEBUG="1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == [
        True, [".localhost", "127.0.0.1", "[::1]", "testserver"], False, False, False, 0, 0, True, 600, True,
    ]


@pytest.mark.parametrize("url", ["", "postgres://u@127.0.0.1:5432/x"])
def test_connection_age_comes_from_the_environment(tmp_path, url):
    code = "d = settings.DATABASES['default']; print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'], settings.SLCT_WORKER_CONN_MAX_AGE)"
    result = run_django(tmp_path, code, DEBUG="1", DATABASE_URL=url, CONN_MAX_AGE="30", SLCT_WORKER_CONN_MAX_AGE="120")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["30", "True", "120"]


@pytest.mark.parametrize("given,expected", [(None, "1"), ("0", "0"), ("1", "1")])
def test_setup_env_asks_for_development_unless_told_otherwise(tmp_path, given, expected):
    env = django_env(tmp_path, REDIS_URL="redis://127.0.0.1:1/0", DEBUG=given)
    result = subprocess.run(["bash", "-c", "source scripts/setup-env.sh && echo \"DEBUG=$DEBUG\""], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == f"DEBUG={expected}"


def test_gunicorn_config_loads_the_app_in_production(tmp_path):
    gunicorn = Path(sys.executable).with_name("gunicorn")
    env = django_env(tmp_path, **documented_production_env(), PORT="8123", WEB_CONCURRENCY="3", GUNICORN_THREADS="2")
    result = subprocess.run([str(gunicorn), "--check-config", "-c", "gunicorn.conf.py"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    printed = subprocess.run([str(gunicorn), "--print-config", "-c", "gunicorn.conf.py"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120).stdout
    config = dict(re.findall(r"^(\w+)\s+= (.*)$", printed, re.M))
    assert config["bind"] == "['0.0.0.0:8123']" and config["workers"] == "3" and config["threads"] == "2"
    assert config["worker_class"] == "gthread" and config["max_requests_jitter"] == "100"
    assert config["accesslog"] == "-" and config["wsgi_app"] == "slct_project.wsgi:application"
    # and without the production environment, gunicorn refuses to serve
    bare = subprocess.run([str(gunicorn), "--check-config", "-c", "gunicorn.conf.py"], cwd=ROOT,
                          env=django_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert "ImproperlyConfigured: SECRET_KEY is not set" in bare.stderr
