"""Read replicas: with a site's router that sends every read to a replica listed after
PrimaryRouter, the engine still reads and writes only the primary (docs/DEPLOY.md).

The "replica" here is an empty SQLite database: a read of an engine table routed there fails with
"no such table", so a run that completes proves no such read happened.
"""
from __future__ import annotations

import sqlite3
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import OperationalError, connections

from slct_workflows import deploy

from slct_workflows.read import selectors
from slct_workflows.models import Goroutine, ProcessInstance

PRIMARY_FIRST = ["slct_workflows.routers.PrimaryRouter", "tests.deploy.test_replica.EverythingToReplica"]


class EverythingToReplica:
    """A site's replica router, as careless as they come: every read goes to the replica."""

    def db_for_read(self, model, **hints):
        return "replica"

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        return True


@pytest.fixture(scope="module")
def replica(django_db_setup, django_db_blocker, tmp_path_factory):
    path = tmp_path_factory.mktemp("replica") / "replica.sqlite3"
    sqlite3.connect(path).close()
    # A database alias for this module only: added after the test databases were created (so no
    # test database is made for it) and before each test's database fixture checks the aliases
    # the test names (module scope).
    configured = connections.configure_settings({
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
        "replica": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)},
    })
    connections.settings["replica"] = configured["replica"]
    try:
        yield "replica"
    finally:
        if hasattr(connections._connections, "replica"):
            connections["replica"].close()
            del connections["replica"]
        del connections.settings["replica"]


BOTH = pytest.mark.django_db(databases=["default", "replica"])


@BOTH
def test_without_the_primary_router_engine_reads_hit_the_replica(replica, settings):
    settings.DATABASE_ROUTERS = ["tests.deploy.test_replica.EverythingToReplica"]
    with pytest.raises(OperationalError, match="no such table"):
        ProcessInstance.objects.count()


@BOTH
def test_with_it_a_process_runs_and_is_read_on_the_primary_only(replica, settings, runner):
    settings.DATABASE_ROUTERS = PRIMARY_FIRST
    pid = runner.start("counter", {"idle_seconds": 60})
    for value in (1, 2):
        assert runner.send("counter", value).status == "delivered"
    runner.assert_waits(pid, Main=["recv counter", "timer"])
    assert [g.name for g in selectors.goroutines(pid)] == ["Main"]  # the read side of the API and the admin
    report = deploy.check()  # the pre-deploy gate, with its .iterator()
    assert report.ok and report.checked == 1
    out = StringIO()
    call_command("slct_check", stdout=out, no_color=True)
    assert "OK: 1 live process fit the code." in out.getvalue()
    runner.advance(seconds=60)
    runner.assert_finished(pid, {"count": 2})
    assert ProcessInstance.objects.all().db == "default" and Goroutine.objects.all().db == "default"
    # the site's router still decides for the other apps: User reads go to the (empty) replica
    assert User.objects.all().db == "replica"
    with pytest.raises(OperationalError, match="no such table"):
        User.objects.count()
