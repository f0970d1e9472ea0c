"""Authentication (token, session) and the permission mapping of every endpoint."""
import pytest
from rest_framework.test import APIClient

from .conftest import ALL_PERMS, counts

# (method, path, body, permission needed, success status)
ENDPOINTS = [
    ("get", "/api/definitions/", None, "view_processinstance", 200),
    ("get", "/api/definitions/counter/", None, "view_processinstance", 200),
    ("get", "/api/processes/", None, "view_processinstance", 200),
    ("post", "/api/processes/", {"definition": "counter"}, "add_processinstance", 201),
    ("get", "/api/processes/p1/", None, "view_processinstance", 200),
    ("get", "/api/processes/p1/history/", None, "view_processinstance", 200),
    ("post", "/api/processes/p1/cancel/", None, "change_processinstance", 200),
    ("post", "/api/processes/p2/retry/", None, "change_processinstance", 409),
    ("get", "/api/channels/", None, "view_channel", 200),
    ("post", "/api/channels/", {"capacity": 1}, "add_channel", 201),
    ("get", "/api/channels/ch/", None, "view_channel", 200),
    ("post", "/api/channels/ch/send/", {"value": 1}, "add_externalsend", 200),
    ("post", "/api/channels/ch/close/", None, "change_channel", 200),
    ("get", "/api/sends/s1/", None, "view_externalsend", 200),
]


@pytest.fixture
def world(api):
    assert api.post("/api/processes/", {"definition": "counter", "id": "p1"}, format="json").status_code == 201
    assert api.post("/api/processes/", {"definition": "counter", "id": "p2"}, format="json").status_code == 201
    assert api.post("/api/channels/", {"name": "ch", "capacity": 5}, format="json").status_code == 201
    assert api.post("/api/channels/", {"name": "other"}, format="json").status_code == 201
    r = api.post("/api/channels/other/send/", {"value": 0}, format="json", HTTP_IDEMPOTENCY_KEY="s1")
    assert r.status_code == 202


def call(client, method, path, body, **extra):
    if method == "get":
        return client.get(path, **extra)
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="perm-test", **extra)


@pytest.mark.parametrize("method,path,body,perm,ok", ENDPOINTS)
def test_anonymous_gets_401_and_changes_nothing(world, anon, method, path, body, perm, ok):
    before = counts()
    r = call(anon, method, path, body)
    assert r.status_code == 401
    assert r.json()["code"] == "not_authenticated" and r["WWW-Authenticate"] == "Token"
    assert counts() == before


@pytest.mark.parametrize("method,path,body,perm,ok", ENDPOINTS)
def test_bad_token_gets_401(world, method, path, body, perm, ok):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    r = call(client, method, path, body)
    assert r.status_code == 401 and r.json()["code"] == "authentication_failed"


@pytest.mark.parametrize("method,path,body,perm,ok", ENDPOINTS)
def test_each_endpoint_needs_exactly_its_permission(world, users, method, path, body, perm, ok):
    others = [p for p in ALL_PERMS if p != perm]
    before = counts()
    denied = call(users.client(*others), method, path, body)
    assert denied.status_code == 403, denied.json()
    assert denied.json()["code"] == "permission_denied" and f"slct_workflows.{perm}" in denied.json()["detail"]
    assert counts() == before
    allowed = call(users.client(perm), method, path, body)
    assert allowed.status_code == ok, allowed.json()


@pytest.mark.parametrize("method,path,body,perm,ok", ENDPOINTS)
def test_superuser_may_do_everything(world, users, method, path, body, perm, ok):
    assert call(users.client(superuser=True), method, path, body).status_code == ok


def test_session_auth_with_csrf(world, users):
    user = users.make("view_processinstance", "add_processinstance")
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username=user.username, password="pw")
    r = client.get("/api/processes/")
    assert r.status_code == 200 and r.json()["count"] == 2
    # unsafe methods with a session need the CSRF token
    no_csrf = client.post("/api/processes/", {"definition": "counter"}, format="json")
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["detail"]
    client.get("/admin/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    ok = client.post("/api/processes/", {"definition": "counter"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 201
    denied = client.post("/api/channels/", {}, format="json", HTTP_X_CSRFTOKEN=token)
    assert denied.status_code == 403


def test_token_from_the_authtoken_endpoint_style_header(world, users):
    from rest_framework.authtoken.models import Token

    user = users.make("view_channel")
    key = Token.objects.create(user=user).key
    client = APIClient()
    assert client.get("/api/channels/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert client.get("/api/channels/", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 401


def test_wrong_method_is_405_json(api):
    r = api.delete("/api/processes/")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    r = api.get("/api/channels/x/send/")
    assert r.status_code == 405


def test_unknown_api_path_is_json_404(api):
    r = api.get("/api/nothing-here/")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = api.post("/api/processes", {"definition": "counter"}, format="json")  # no trailing slash
    assert r.status_code == 404 and r.json()["detail"].endswith("(did you mean /api/processes/ ?)")


@pytest.mark.parametrize("method,path,body,perm,ok", ENDPOINTS)
def test_options_describes_every_endpoint(world, api, method, path, body, perm, ok):
    r = api.options(path)
    assert r.status_code == 200, r.content
    assert r.json()["name"] and "application/json" in r.json()["parses"]


@pytest.mark.parametrize("method,path,body,perm,ok", [e for e in ENDPOINTS if e[0] == "get"])
def test_browsers_get_json(world, api, method, path, body, perm, ok):
    r = api.get(path, HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert r.status_code == ok and r["Content-Type"] == "application/json"
    r = api.get(path, HTTP_ACCEPT="text/html")
    assert r.status_code == 406 and r.json()["code"] == "not_acceptable"
