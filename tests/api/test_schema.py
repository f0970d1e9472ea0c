"""The OpenAPI schema, the docs pages (assets served locally), and schemathesis runs against the
real Django WSGI app with all its checks: the server must answer exactly as its schema says."""
import hypothesis
import pytest
import schemathesis
from django.contrib.staticfiles import finders
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from rest_framework.authtoken.models import Token
from schemathesis.config import SchemathesisConfig

from slct_workflows.models import ProcessInstance
from slct_workflows.values import KEY_PATTERN, NAME_PATTERN

from .conftest import ALL_PERMS


def test_schema_is_openapi3_and_lists_every_operation(anon):
    r = anon.get("/api/schema/?format=json")
    assert r.status_code == 200
    schema = r.json()
    assert schema["openapi"].startswith("3.")
    ops = {(path, method) for path, item in schema["paths"].items() for method in item}
    # The runaway guard's resume endpoint belongs to another change; it may or may not be there yet.
    assert ops - {("/api/processes/{id}/resume/", "post")} == {
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


def test_schema_states_the_rules(anon):
    schema = anon.get("/api/schema/?format=json").json()
    comps = schema["components"]["schemas"]
    name_pattern = f"^{NAME_PATTERN}$"
    for path, item in schema["paths"].items():
        for method, op in item.items():
            params = {(p["in"], p["name"]): p["schema"] for p in op.get("parameters", [])}
            for (where, pname), pschema in params.items():
                if where == "path" and pname in ("id", "name"):
                    assert pschema["pattern"] == name_pattern, (path, pname)
            codes = set(op["responses"])
            assert {"400", "401", "403", "406"} <= codes, (path, method)
            if method == "post":
                assert {"413", "415"} <= codes, (path, method)
                body = op.get("requestBody")
                if body:
                    ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                    assert comps[ref]["additionalProperties"] is False, ref
            if "{" in path or op["operationId"] in ("processes_list", "channels_list"):  # paginated
                assert "404" in codes, (path, method)
    start = comps["StartProcessRequest"]["properties"]
    assert "counter" in comps["DefinitionEnum"]["enum"] and start["definition"]["allOf"]
    assert start["id"]["pattern"] == name_pattern and start["input"] == {"$ref": "#/components/schemas/JSONValue"}
    assert comps["JSONValue"]["pattern"] == "^[^\\x00]*$"
    assert comps["CreateChannelRequest"]["properties"]["capacity"] == {
        "type": "integer", "maximum": 1000000, "minimum": 0, "default": 0,
        "description": "buffer size; 0 = unbuffered (rendezvous)",
    }
    send = schema["paths"]["/api/channels/{name}/send/"]["post"]
    key = next(p for p in send["parameters"] if p["name"] == "Idempotency-Key")
    assert key["schema"]["pattern"] == f"^{KEY_PATTERN}$" and key["required"] is True
    assert send["responses"]["202"]["headers"]["Location"]["required"] is True
    listing = {p["name"]: p["schema"] for p in schema["paths"]["/api/processes/"]["get"]["parameters"]}
    assert listing["page_size"] == {"type": "integer", "maximum": 500, "minimum": 1}
    assert listing["page"]["minimum"] == 1 and listing["search"]["minLength"] == 1
    assert "forbidden" in schema["components"]["schemas"]["Error"]["properties"]["code"]["description"]


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
#
# Every operation, with every check schemathesis has (server errors, status codes, content types,
# response schemas and headers, schema-valid data accepted, schema-invalid data rejected, missing
# required headers, ignored auth, unsupported methods, and in the stateful run use after free and
# resource availability), in its examples, coverage, fuzzing and stateful phases. Derandomized
# generation makes a run repeatable; max_examples bounds it.

FUZZ_TOKEN = "slct-fuzz-0123456789abcdef0123456789abc"  # a Token key (40 characters) made by fuzz_user
FUZZ_CONFIG = SchemathesisConfig.from_dict({
    "seed": 20260101,
    "auth": {"openapi": {"tokenAuth": {"api_key": f"Token {FUZZ_TOKEN}"}}},
    "suppress-health-check": ["all"],  # the fixtures are function-scoped on purpose (one transaction)
    # OpenAPI 3.0 (JSON Schema draft 4, where 5.0 is no integer, as for the server) has no
    # `propertyNames`: the schema says only in words that object keys in JSON values may not contain
    # NUL. The NUL rule itself is tested in test_bad_input (bodies and queries).
    "generation": {"max-examples": 60, "deterministic": True, "database": "none", "allow-x00": False},
})


@pytest.fixture
def fuzz_user(users, api, run):
    """A user holding every slct permission (not a superuser) with the token FUZZ_TOKEN, and a few
    objects the schema's examples name: process demo-1 waiting on channel demo, channel demo-buf,
    send demo-key."""
    assert api.post("/api/processes/", {"definition": "counter", "id": "demo-1",
                                        "input": {"channel": "demo"}}, format="json").status_code == 201
    run.run()
    assert api.post("/api/channels/", {"name": "demo-buf", "capacity": 2}, format="json").status_code == 201
    r = api.post("/api/channels/demo/send/", {"value": 1}, format="json", HTTP_IDEMPOTENCY_KEY="demo-key")
    assert r.status_code == 200
    user = users.make(*ALL_PERMS)
    Token.objects.create(user=user, key=FUZZ_TOKEN)
    return user


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
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application(), config=FUZZ_CONFIG)


@schema.parametrize()
def test_api_matches_its_schema(case, fuzz_user, wsgi_keeps_test_connection):
    case.call_and_validate()
    assert ProcessInstance.objects.filter(pk="demo-1").exists()


def test_api_sequences_match_its_schema(fuzz_user, wsgi_keeps_test_connection):
    """Sequences of calls linked by what responses return (an id, a name, a Location)."""

    class Workflow(schema.as_state_machine()):
        # Each scenario starts from the fixture's rows: Hypothesis replays scenarios and expects the
        # same answers (a channel name taken by an earlier scenario would answer 409 instead of 201).
        def setup(self):
            self.savepoint = transaction.savepoint()

        def teardown(self):
            transaction.savepoint_rollback(self.savepoint)

        def before_call(self, case):
            steps.append(case.operation.label)

    steps: list[str] = []
    Workflow.run(settings=hypothesis.settings(
        max_examples=50, stateful_step_count=6, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    ))
    assert len(set(steps)) > 5, steps  # it did walk the API
