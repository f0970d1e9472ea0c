"""Fixtures for the admin tests: logged-in clients with chosen permissions, an in-process runner."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages

from slct_workflows.testing import WorkflowRunner

ALL_VIEW = [
    "view_processinstance", "view_goroutine", "view_channel", "view_bufferedvalue", "view_pendingcase",
    "view_event", "view_externalsend", "view_outbox",
]


@pytest.fixture
def run(db):
    with WorkflowRunner() as runner:
        yield runner


@pytest.fixture
def make_client(db, client):
    """make_client(*codenames) -> a test client logged in as a staff user with exactly those
    slct_workflows permissions (superuser=True for everything)."""
    counter = iter(range(1000))

    def make(*codenames: str, superuser: bool = False):
        from django.test import Client

        n = next(counter)
        if superuser:
            user = User.objects.create_superuser(f"admin{n}", f"admin{n}@example.com", None)
        else:
            user = User.objects.create_user(f"staff{n}", f"staff{n}@example.com", None, is_staff=True)
            perms = Permission.objects.filter(content_type__app_label="slct_workflows", codename__in=codenames)
            assert perms.count() == len(set(codenames)), f"unknown permission in {codenames}"
            user.user_permissions.set(perms)
        c = Client()
        c.force_login(user)
        return c

    return make


@pytest.fixture
def admin_client_(make_client):
    return make_client(superuser=True)


def messages_of(response) -> list[tuple[str, str]]:
    """(level tag, text) of the messages a redirect-followed response carries."""
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def unused_port() -> int:
    """A local TCP port nothing listens on (a Redis that is down)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
