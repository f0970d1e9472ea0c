"""fixed_sql's round trips on psycopg's cursor itself (`_direct_cursor`): taken only where nothing
could tell it from Django's cursor, and then as strict as Django's cursor about broken
transactions and errors. Where something watches the queries (an execute wrapper, the query log,
a tracer that patched Django's CursorWrapper), every round trip goes through Django's cursor."""
from __future__ import annotations

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.transaction import TransactionManagementError

from slct_workflows import services
from slct_workflows.models import Channel, Goroutine, GoroutineStatus
from slct_workflows.runtime import fixed_sql
from slct_workflows.runtime.fixed_sql import FixedQuery, Statement, execute_together
from tests.conftest import postgres_only

pytestmark = pytest.mark.django_db

_CHANNELS = FixedQuery(lambda names: Channel.objects.filter(name__in=names).order_by("name"))


@pytest.fixture
def django_cursors(monkeypatch):
    """How many times Django's cursor was opened (each round trip through Django opens one)."""
    cls = type(_wrapper())
    original = cls._cursor
    opened = [0]

    def counting(self, *args, **kwargs):
        opened[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, "_cursor", counting)
    return opened


def _wrapper():
    from django.db import connections

    return connections["default"]


def test_round_trips_use_one_kept_psycopg_cursor_on_postgresql_and_djangos_on_sqlite(django_cursors):
    services.create_channel("dc-a")
    _CHANNELS(["dc-a"])  # connected; on PostgreSQL, the kept cursor made
    django_cursors[0] = 0
    for _ in range(3):
        assert [c.name for c in _CHANNELS(["dc-a"])] == ["dc-a"]
    if connection.vendor == "postgresql":
        kept = connection._slct_cursor[1]
        assert django_cursors[0] == 0
        assert [c.name for c in _CHANNELS(["dc-a"])] == ["dc-a"]
        assert connection._slct_cursor[1] is kept
        assert fixed_sql.sends_together() is True
    else:
        assert django_cursors[0] == 3  # one per round trip, as before
        assert fixed_sql._direct_cursor(_wrapper()) is None
        assert fixed_sql.sends_together() is False


def test_an_execute_wrapper_sees_every_round_trip_of_a_step(runner):
    """One door: a wrapper installed by anyone (a metrics library, a test) sees the step's
    statements exactly as they are sent, on both databases."""
    seen: list[str] = []

    def watch(execute, sql, params, many, context):
        seen.append(fixed_sql.expand(sql))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        pid = runner.start("counter", {"idle_seconds": 60, "channel": "dc-w"})
    assert any("slct_workflows_goroutine" in text and "UPDATE" in text for text in seen), seen
    assert Goroutine.objects.filter(process_id=pid, status=GoroutineStatus.BLOCKED).exists()


def test_a_tracer_that_patched_djangos_cursor_sees_the_round_trips(monkeypatch):
    """Sentry's Django integration patches CursorWrapper.execute instead of adding a wrapper:
    the kept cursor would hide the hot path from it, so it is not used then."""
    services.create_channel("dc-t")
    seen: list[str] = []
    original = CursorWrapper.execute

    def traced(self, sql, params=None):
        seen.append(sql)
        return original(self, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", traced)
    assert [c.name for c in _CHANNELS(["dc-t"])] == ["dc-t"]
    assert any("slct_workflows_channel" in fixed_sql.expand(text) for text in seen), seen


def test_the_query_log_sees_the_round_trips():
    from django.test.utils import CaptureQueriesContext

    services.create_channel("dc-l")
    with CaptureQueriesContext(connection) as ctx:
        _CHANNELS(["dc-l"])
    assert any("slct_workflows_channel" in fixed_sql.expand(q["sql"]) for q in ctx.captured_queries)


def test_errors_on_the_kept_cursor_are_djangos_and_the_transaction_goes_on_after_a_savepoint():
    postgres_only("the kept cursor is psycopg's client-side cursor")
    services.create_channel("dc-e")
    _CHANNELS(["dc-e"])
    table = Channel._meta.db_table
    insert = Statement(f'INSERT INTO "{table}" SELECT * FROM "{table}" WHERE name = %s', ["dc-e"], 1, "a copy")
    with transaction.atomic():
        with pytest.raises(IntegrityError) as raised:
            with transaction.atomic():
                execute_together([insert])
        assert isinstance(raised.value, DatabaseError)
        assert getattr(raised.value.__cause__, "sqlstate", None) == "23505"  # the driver's, kept as the cause
        assert [c.name for c in _CHANNELS(["dc-e"])] == ["dc-e"]  # on the same kept cursor


def test_a_transaction_that_must_roll_back_refuses_the_kept_cursor_too():
    services.create_channel("dc-r")
    with transaction.atomic():
        _CHANNELS(["dc-r"])
        connection.needs_rollback = True  # as after an error swallowed inside an atomic block
        with pytest.raises(TransactionManagementError):
            _CHANNELS(["dc-r"])
    assert [c.name for c in _CHANNELS(["dc-r"])] == ["dc-r"]


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_gets_a_new_kept_cursor():
    postgres_only("the kept cursor is psycopg's client-side cursor")
    services.create_channel("dc-n")
    _CHANNELS(["dc-n"])
    old_session, old_cursor = connection._slct_cursor
    connection.close()
    connection.ensure_connection()
    assert [c.name for c in _CHANNELS(["dc-n"])] == ["dc-n"]
    session, cursor = connection._slct_cursor
    assert session is connection.connection and session is not old_session
    assert cursor is not old_cursor and not cursor.closed


def test_a_connection_whose_health_check_is_due_goes_through_django(monkeypatch):
    postgres_only("the kept cursor is psycopg's client-side cursor")
    conn = _wrapper()
    _CHANNELS(["dc-h"])
    assert fixed_sql._direct_cursor(conn) is not None
    monkeypatch.setattr(conn, "health_check_enabled", True)
    monkeypatch.setattr(conn, "health_check_done", False)
    assert fixed_sql._direct_cursor(conn) is None  # Django's cursor runs the health check first
    _CHANNELS(["dc-h"])
    assert conn.health_check_done is True
    assert fixed_sql._direct_cursor(conn) is not None


def test_timestamps_read_on_the_kept_cursor_equal_the_orms_and_are_parsed_by_psycopg(runner):
    """The kept cursor parses timestamptz with psycopg's own loader (C where installed) instead of
    Django's Python subclass, because the session's time zone is Django's: same values, same
    tzinfo."""
    postgres_only("the kept cursor is psycopg's client-side cursor")
    from psycopg.pq import Format

    pid = runner.start("counter", {"idle_seconds": 60, "channel": "dc-ts"})
    by_process = FixedQuery(lambda p: Goroutine.objects.filter(process_id=p).order_by("id"))
    fixed, orm = by_process(pid), list(Goroutine.objects.filter(process_id=pid).order_by("id"))
    fields = [f.attname for f in Goroutine._meta.concrete_fields if f.get_internal_type() == "DateTimeField"]
    assert fields and fixed
    compared = 0
    for a, b in zip(fixed, orm):
        for name in fields:
            x, y = getattr(a, name), getattr(b, name)
            assert x == y and (x is None or x.tzinfo == y.tzinfo), name
            compared += x is not None
    assert compared >= 2
    kept = connection._slct_cursor[1]
    oid = kept.connection.adapters.types["timestamptz"].oid
    loader = kept.adapters.get_loader(oid, Format.TEXT)
    assert not loader.__module__.startswith("django"), loader
