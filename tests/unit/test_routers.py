"""slct_workflows.routers.PrimaryRouter on its own: the engine's apps go to the primary, every
other app is left to the routers after it (docs/DEPLOY.md, read replicas)."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django_rq.models import Dashboard

from slack_integration.models import PendingQuestion, SlackMessage, SlackUser
from slct_workflows.models import Channel, Event, Goroutine, ProcessInstance
from slct_workflows.routers import PrimaryRouter

router = PrimaryRouter()
PINNED = [ProcessInstance, Goroutine, Channel, Event, SlackMessage, PendingQuestion, SlackUser, Dashboard]


@pytest.mark.parametrize("model", PINNED, ids=lambda m: m._meta.label)
def test_reads_and_writes_of_the_engine_apps_go_to_the_primary(model):
    assert router.db_for_read(model) == "default"
    assert router.db_for_write(model) == "default"
    # whatever instance a caller hints with
    assert router.db_for_read(model, instance=model()) == "default"


@pytest.mark.parametrize("model", [User, Session], ids=lambda m: m._meta.label)
def test_other_apps_are_left_to_the_next_router(model):
    assert router.db_for_read(model) is None
    assert router.db_for_write(model) is None


def test_engine_tables_migrate_only_on_the_primary():
    for app in ("slct_workflows", "slack_integration", "django_rq"):
        assert router.allow_migrate("default", app) is True
        assert router.allow_migrate("replica", app, model_name="anything") is False
    assert router.allow_migrate("replica", "auth") is None
    assert router.allow_migrate("default", "auth") is None


def _on(obj, alias):
    obj._state.db = alias
    return obj


def test_relations_of_engine_rows_are_allowed_on_the_same_database_only_by_this_router():
    proc, user = ProcessInstance(), User()
    assert router.allow_relation(_on(proc, "default"), _on(user, "default")) is True
    # a User read from a replica: this router does not decide (a replica router may allow it)
    assert router.allow_relation(_on(proc, "default"), _on(user, "replica")) is None
    assert router.allow_relation(_on(User(), "replica"), _on(User(), "default")) is None
