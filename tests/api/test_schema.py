"""The OpenAPI schema, the docs pages (assets served locally), and a schemathesis run against the
real Django WSGI app that must find no server error."""
import pytest
import schemathesis
from django.contrib.staticfiles import finders
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)
from schemathesis.checks import not_a_server_error

from slct_workflows.models import ProcessInstance


def test_schema_is_openapi3_and_lists_every_operation(anon):
    r = anon.get("/api/schema/?format=json")
    assert r.status_code == 200
    schema = r.json()
    assert schema["openapi"].startswith("3.")
    ops = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert ops == {
        ("/api/definitions/", "get"), ("/api/definitions/{name}/", "get"),
        ("/api/processes/", "get"), ("/api/processes/", "post"), ("/api/processes/{id}/", "get"),
        ("/api/processes/{id}/history/", "get"), ("/api/processes/{id}/cancel/", "post"),
        ("/api/processes/{id}/retry/", "post"),
        ("/api/channels/", "get"), ("/api/channels/", "post"), ("/api/channels/{name}/", "get"),
        ("/api/channels/{name}/send/", "post"), ("/api/channels/{name}/close/", "post"),
        ("/api/sends/{key}/", "get"),
    }
    send = schema["paths"]["/api/channels/{name}/send/"]["post"]
    header = [p for p in send["parameters"] if p["in"] == "header"]
    assert header and header[0]["name"] == "Idempotency-Key" and header[0]["required"] is True
    assert {"200", "202", "409"} <= set(send["responses"])
    assert set(schema["components"]["securitySchemes"]) == {"tokenAuth", "cookieAuth"}


def test_docs_page_loads_assets_locally(anon):
    r = anon.get("/api/docs/")
    assert r.status_code == 200
    html = r.content.decode()
    assert "swagger-ui" in html.lower() and "/api/schema/" in html
    assert "cdn" not in html.lower() and "https://" not in html and "http://" not in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    for asset in ["swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"]:
        assert finders.find(f"drf_spectacular_sidecar/swagger-ui-dist/{asset}"), asset
    assert anon.get("/api/redoc/").status_code == 404  # only the Swagger UI page (Redoc loads web fonts)


# -- schemathesis ------------------------------------------------------------------------------

@pytest.fixture
def fuzz_token(users, api, run):
    """A superuser's token, and a few objects that the schema's examples name."""
    assert api.post("/api/processes/", {"definition": "counter", "id": "demo-1",
                                        "input": {"channel": "demo"}}, format="json").status_code == 201
    run.run()
    assert api.post("/api/channels/", {"name": "demo-buf", "capacity": 2}, format="json").status_code == 201
    r = api.post("/api/channels/demo/send/", {"value": 1}, format="json", HTTP_IDEMPOTENCY_KEY="demo-key")
    assert r.status_code == 200
    return Token.objects.create(user=users.make(superuser=True)).key


@pytest.fixture
def wsgi_keeps_test_connection(db):
    # Like Django's test client: keep the test's connection (and its transaction) across requests.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


# Loaded at collection (pytest-django has set Django up by then; serving the schema needs no
# database). schemathesis' lazy `from_fixture` loader does not work with pytest 9.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx(case, fuzz_token, wsgi_keeps_test_connection):
    response = case.call(headers={"Authorization": f"Token {fuzz_token}"})
    case.validate_response(response, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
    ])
    assert ProcessInstance.objects.filter(pk="demo-1").exists()
