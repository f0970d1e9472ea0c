"""slct_project/env.py: the Sentinel queue entry and the PgBouncer database option, from the
environment, and settings.py using them (docs/DEPLOY.md)."""
from __future__ import annotations

import json

import pytest
from django.core.exceptions import ImproperlyConfigured

from slct_project import env
from tests.security.test_production_settings import refused, run_django

SENTINEL_ENV = {"REDIS_SENTINELS": "10.1.0.1:26379, redis-b:26380,[fd00::3]:26381,redis-c",
                "REDIS_SENTINEL_MASTER": "slct"}


def test_sentinels_become_django_rqs_sentinel_entry():
    entry = env.sentinel_queue({**SENTINEL_ENV, "REDIS_SENTINEL_DB": "2", "REDIS_SENTINEL_PASSWORD": "s3cret",
                                "REDIS_SENTINEL_AUTH_PASSWORD": "sentinel-pw"})
    assert entry == {
        "SENTINELS": [("10.1.0.1", 26379), ("redis-b", 26380), ("fd00::3", 26381), ("redis-c", 26379)],
        "MASTER_NAME": "slct",
        "DB": 2,
        "PASSWORD": "s3cret",
        "SOCKET_TIMEOUT": 10,
        "CONNECTION_KWARGS": {"socket_connect_timeout": 5},
        "SENTINEL_KWARGS": {"socket_timeout": 5, "socket_connect_timeout": 5, "password": "sentinel-pw"},
    }


def test_defaults_and_no_sentinel_at_all():
    entry = env.sentinel_queue(SENTINEL_ENV)
    assert entry["DB"] == 0 and entry["PASSWORD"] is None and "password" not in entry["SENTINEL_KWARGS"]
    assert env.sentinel_queue({}) is None
    assert env.sentinel_queue({"REDIS_URL": "redis://r:6379/0", "REDIS_SENTINELS": " ", "REDIS_SENTINEL_MASTER": ""}) is None


@pytest.mark.parametrize("environ,message", [
    ({"REDIS_SENTINELS": "a:1"}, "REDIS_SENTINEL_MASTER"),
    ({"REDIS_SENTINEL_MASTER": "slct"}, "REDIS_SENTINELS (host:port,host:port) is not"),
    ({**SENTINEL_ENV, "REDIS_URL": "redis://r:6379/0"}, "REDIS_URL and REDIS_SENTINELS are both set"),
    ({**SENTINEL_ENV, "REDIS_SENTINELS": "a:port"}, "'a:port' has a port that is not a number"),
    ({**SENTINEL_ENV, "REDIS_SENTINELS": "a:"}, "'a:' has a port that is not a number"),
    ({**SENTINEL_ENV, "REDIS_SENTINELS": "a:70000"}, "outside 1-65535"),
    ({**SENTINEL_ENV, "REDIS_SENTINELS": ":26379"}, "has no host"),
    ({**SENTINEL_ENV, "REDIS_SENTINELS": ",,"}, "names no sentinel"),
    ({**SENTINEL_ENV, "REDIS_SENTINELS": "fd00::3:26379"}, "IPv6 address in brackets"),
    ({**SENTINEL_ENV, "REDIS_SENTINELS": "[fd00::3"}, "is not [address]:port"),
    ({**SENTINEL_ENV, "REDIS_SENTINEL_DB": "-1"}, "REDIS_SENTINEL_DB"),
    ({**SENTINEL_ENV, "REDIS_SENTINEL_DB": "one"}, "REDIS_SENTINEL_DB"),
])
def test_bad_sentinel_settings_are_refused(environ, message):
    with pytest.raises(ImproperlyConfigured, match="REDIS_SENTINEL|REDIS_URL") as raised:
        env.sentinel_queue(environ)
    assert message in str(raised.value)


@pytest.mark.parametrize("raw,expected", [("1", True), ("true", True), ("0", False), ("", False), (None, False)])
def test_disable_server_side_cursors(raw, expected):
    environ = {} if raw is None else {"DATABASE_DISABLE_SERVER_SIDE_CURSORS": raw}
    db = env.database_pooling({"ENGINE": "django.db.backends.postgresql"}, environ)
    assert db.get("DISABLE_SERVER_SIDE_CURSORS", False) is expected


def test_a_bad_flag_is_refused():
    with pytest.raises(ImproperlyConfigured, match="DATABASE_DISABLE_SERVER_SIDE_CURSORS must be a boolean"):
        env.database_pooling({}, {"DATABASE_DISABLE_SERVER_SIDE_CURSORS": "maybe"})


# -- settings.py, imported in a fresh process with these variables ------------------------------

SHOW = ("import json\nq = settings.RQ_QUEUES[settings.SLCT_QUEUE]\n"
        "print(json.dumps({'queue': q, 'db': settings.DATABASES['default'].get('DISABLE_SERVER_SIDE_CURSORS')}))")


def _settings(tmp_path, **environ) -> dict:
    result = run_django(tmp_path, SHOW, DEBUG="1", **environ)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_settings_put_the_queue_on_sentinel_and_keep_its_timeout(tmp_path):
    shown = _settings(tmp_path, REDIS_SENTINELS="127.0.0.1:26379,127.0.0.2:26379", REDIS_SENTINEL_MASTER="slct",
                      SLCT_QUEUE="jobs")
    queue = shown["queue"]
    assert "URL" not in queue and queue["MASTER_NAME"] == "slct" and queue["DEFAULT_TIMEOUT"] == 300
    assert queue["SENTINELS"] == [["127.0.0.1", 26379], ["127.0.0.2", 26379]]
    assert shown["db"] is None
    plain = _settings(tmp_path, REDIS_URL="redis://127.0.0.1:6379/3",
                      DATABASE_URL="postgres://u@127.0.0.1:6432/slct", DATABASE_DISABLE_SERVER_SIDE_CURSORS="1")
    assert plain["queue"]["URL"].startswith("redis://127.0.0.1:6379/3?") and plain["db"] is True


@pytest.mark.parametrize("environ,variable", [
    ({"REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_SENTINEL_MASTER": "slct", "REDIS_URL": "redis://x:6379/0"}, "REDIS_URL"),
    ({"REDIS_SENTINELS": "127.0.0.1:nope", "REDIS_SENTINEL_MASTER": "slct"}, "REDIS_SENTINELS"),
    ({"DATABASE_DISABLE_SERVER_SIDE_CURSORS": "sometimes"}, "DATABASE_DISABLE_SERVER_SIDE_CURSORS"),
])
def test_settings_refuse_bad_values_at_start_up(tmp_path, environ, variable):
    refused(run_django(tmp_path, "", DEBUG="1", **environ), variable)
