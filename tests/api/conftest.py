"""Fixtures for the REST API tests: users with chosen permissions, token/session clients, a
dispatcher that drops wake-ups (the WorkflowRunner finds the work in the database), row counts."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from slct_workflows import models as m
from slct_workflows.testing import WorkflowRunner

ALL_PERMS = [
    "view_processinstance", "add_processinstance", "change_processinstance",
    "view_channel", "add_channel", "change_channel", "view_externalsend", "add_externalsend",
]
COUNTED = [
    m.ProcessInstance, m.Goroutine, m.Channel, m.BufferedValue, m.PendingCase, m.Event, m.ExternalSend, m.Outbox,
]


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def run(db):
    with WorkflowRunner() as runner:
        yield runner


@dataclass
class Users:
    django_user_model: type
    n: int = 0

    def make(self, *codenames: str, superuser: bool = False):
        self.n += 1
        user = self.django_user_model.objects.create_user(
            username=f"user{self.n}", password="pw", is_superuser=superuser, is_staff=superuser,
        )
        if codenames:
            user.user_permissions.add(
                *Permission.objects.filter(content_type__app_label="slct_workflows", codename__in=codenames)
            )
            assert user.user_permissions.count() == len(codenames)
        return user

    def client(self, *codenames: str, superuser: bool = False) -> APIClient:
        user = self.make(*codenames, superuser=superuser)
        token = Token.objects.create(user=user)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        client.user = user
        return client


@pytest.fixture
def users(django_user_model) -> Users:
    return Users(django_user_model)


@pytest.fixture
def api(users) -> APIClient:
    """A token-authenticated client holding every slct_workflows permission (not a superuser)."""
    return users.client(*ALL_PERMS)


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


def counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in COUNTED}


@pytest.fixture
def unchanged():
    """`with unchanged(): ...` asserts no row of any engine table was added or removed."""
    import contextlib

    @contextlib.contextmanager
    def check():
        before = counts()
        yield
        assert counts() == before

    return check


# A definition whose first step fails while FLAKY["fail"] is true: for failed/retry tests.
from dataclasses import dataclass as _dataclass  # noqa: E402

from slct_workflows import Process, register  # noqa: E402

FLAKY = {"fail": True}


@register("api-test-flaky")
@_dataclass
class FlakyProcess:
    tries: int = 0

    def Main_Start(self, p: Process, input=None):
        if FLAKY["fail"]:
            raise RuntimeError("flaky step failed on purpose")
        p.finish({"ok": True})


@pytest.fixture
def flaky(settings):
    settings.SLCT_MAX_ATTEMPTS = 1
    FLAKY["fail"] = True
    yield FLAKY
    FLAKY["fail"] = True


@register("api-test-taker")
@_dataclass
class Taker:
    """Receives one value from input["channel"] and finishes with it."""

    def Main_Start(self, p: Process, input=None):
        p.select().recv(input["channel"]).to(self.Main_Got)

    def Main_Got(self, p: Process, value):
        p.finish(value)
