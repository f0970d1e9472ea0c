"""Prepared statements (fixed_sql._executes): on PostgreSQL the step's fixed statements are
PREPAREd once per connection and sent as EXECUTE in the same multi-statement round trip; results
are the queryset's; a rollback, a new connection, a statement PostgreSQL refuses to prepare and
the setting being off all leave the step working. SQLite has nothing to prepare."""
from __future__ import annotations


import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from slct_workflows import conf, services
from slct_workflows.models import Channel
from slct_workflows.runtime.fixed_sql import FixedQuery, Statement, execute_together, read_together
from tests.conftest import postgres_only

pytestmark = pytest.mark.django_db

_CHANNELS = FixedQuery(lambda names: Channel.objects.filter(name__in=names).order_by("name"))


@pytest.fixture
def postgres():
    postgres_only("SQLite has no prepared statements")
    # Earlier tests on this connection prepared what they ran: start from a session with nothing.
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    connection._slct_prepared = None


def _session_statements() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {row[0] for row in cursor.fetchall()}


def test_a_fixed_read_is_prepared_once_per_connection_then_executed(postgres):
    services.create_channel("ps-a", capacity=2)
    with CaptureQueriesContext(connection) as first:
        assert [c.name for c in _CHANNELS(["ps-a"])] == ["ps-a"]
    assert [q["sql"] for q in first.captured_queries if q["sql"].startswith("PREPARE ")], "nothing was prepared"
    with CaptureQueriesContext(connection) as again:
        got = _CHANNELS(["ps-a"])
    # Once prepared: one round trip, an EXECUTE with the name the PREPARE gave, same result.
    assert [q["sql"].split("(")[0] for q in again.captured_queries] == [
        q["sql"].split(" AS ")[0].replace("PREPARE", "EXECUTE") for q in first.captured_queries
        if q["sql"].startswith("PREPARE ")
    ]
    assert [(c.name, c.capacity) for c in got] == [("ps-a", 2)]
    name = again.captured_queries[0]["sql"].split()[1].split("(")[0]
    assert name.startswith("slct_select_slct_workflows_channel_") and name in _session_statements()


@pytest.mark.django_db(transaction=True)
def test_preparation_outlives_a_rollback_and_a_new_connection_prepares_again(postgres):
    services.create_channel("ps-b")
    with transaction.atomic():
        sid = transaction.savepoint()
        _CHANNELS(["ps-b"])  # prepared inside a savepoint that is then rolled back
        transaction.savepoint_rollback(sid)
        with CaptureQueriesContext(connection) as ctx:
            assert [c.name for c in _CHANNELS(["ps-b"])] == ["ps-b"]
        assert not any(q["sql"].startswith("PREPARE ") for q in ctx.captured_queries)  # PREPARE is not transactional
    connection.close()  # a new session has nothing prepared: the runtime must notice, not fail
    with CaptureQueriesContext(connection) as ctx:
        assert [c.name for c in _CHANNELS(["ps-b"])] == ["ps-b"]
    assert any(q["sql"].startswith("PREPARE ") for q in ctx.captured_queries)


def test_a_statement_postgresql_cannot_prepare_is_sent_as_it_is_and_the_transaction_goes_on(postgres):
    # `SELECT %s IS NULL` has a parameter whose type PostgreSQL cannot infer: PREPARE fails (42P18).
    with transaction.atomic():
        for _ in range(2):
            execute_together([Statement("SELECT %s IS NULL", ["x"], None, "untyped"),
                              Statement("UPDATE slct_workflows_channel SET capacity = 3 WHERE name = %s", ["ps-c"], 0, "none")])
        services.create_channel("ps-c")  # the transaction is still usable
    assert Channel.objects.filter(name="ps-c").exists()
    with CaptureQueriesContext(connection) as ctx:
        execute_together([Statement("SELECT %s IS NULL", ["x"], None, "untyped")])
    assert [q["sql"] for q in ctx.captured_queries] == ["SELECT 'x' IS NULL"]  # not tried again


def test_a_statement_already_prepared_on_the_session_is_used(postgres):
    services.create_channel("ps-d")
    _CHANNELS(["ps-d"])
    connection._slct_prepared.names.clear()  # as if this process forgot (the session did not)
    assert [c.name for c in _CHANNELS(["ps-d"])] == ["ps-d"]
    with CaptureQueriesContext(connection) as ctx:
        _CHANNELS(["ps-d"])
    assert ctx.captured_queries[0]["sql"].startswith("EXECUTE slct_select_")


def test_reads_and_writes_together_give_the_same_results_prepared_or_not(postgres, settings):
    services.create_channel("ps-e", capacity=4)
    update = "UPDATE slct_workflows_channel SET capacity = capacity + 1 WHERE name = %s"
    results = {}
    for prepared in (False, True, True):
        settings.SLCT_PREPARED_STATEMENTS = prepared
        with CaptureQueriesContext(connection) as ctx:
            execute_together([Statement(update, ["ps-e"], 1, "bump")])
            results.setdefault(prepared, []).append(
                [(c.name, c.capacity) for c in read_together((_CHANNELS, (["ps-e", "nope"],)))[0]])
        assert any(q["sql"].startswith("EXECUTE") for q in ctx.captured_queries) == prepared
    assert results == {False: [[("ps-e", 5)]], True: [[("ps-e", 6)], [("ps-e", 7)]]}


def test_a_wrong_row_count_is_still_caught_when_prepared(postgres):
    from django.db import DatabaseError

    with pytest.raises(DatabaseError, match="0 rows written, expected 1"):
        with transaction.atomic():
            execute_together([Statement("UPDATE slct_workflows_channel SET capacity = 1 WHERE name = %s",
                                        ["ps-missing"], 1, "missing")])


def test_with_the_setting_off_or_on_sqlite_the_statements_run_as_written(settings):
    if connection.vendor == "postgresql":
        settings.SLCT_PREPARED_STATEMENTS = False  # on SQLite there is nothing to prepare either way
    services.create_channel("ps-s")
    with CaptureQueriesContext(connection) as ctx:
        assert [c.name for c in _CHANNELS(["ps-s"])] == ["ps-s"]
    assert [q["sql"].split()[0] for q in ctx.captured_queries] == ["SELECT"]


@pytest.mark.parametrize("raw, expected", [("1", True), ("on", True), ("Yes", True), ("0", False), ("off", False),
                                           ("", False)])
def test_the_setting_reads_on_and_off(settings, raw, expected):
    settings.SLCT_PREPARED_STATEMENTS = raw
    assert conf.prepared_statements() is expected


def test_a_bad_setting_is_refused(settings):
    settings.SLCT_PREPARED_STATEMENTS = "sometimes"
    with pytest.raises(ImproperlyConfigured, match="SLCT_PREPARED_STATEMENTS"):
        conf.prepared_statements()


def test_off_by_default_where_server_side_cursors_are_off(monkeypatch):
    # DATABASE_DISABLE_SERVER_SIDE_CURSORS is the PgBouncer-in-transaction-mode setting: a
    # pooler that moves a connection between sessions loses session state, prepared statements too.
    monkeypatch.delenv("SLCT_PREPARED_STATEMENTS", raising=False)
    monkeypatch.setitem(connection.settings_dict, "DISABLE_SERVER_SIDE_CURSORS", True)
    assert conf.prepared_statements() is False
    monkeypatch.setitem(connection.settings_dict, "DISABLE_SERVER_SIDE_CURSORS", False)
    assert conf.prepared_statements() is True


def test_statements_deallocated_behind_its_back_are_prepared_again_on_the_retry(postgres):
    """A session that lost what this process prepared on it (DEALLOCATE ALL, DISCARD ALL, a pooler
    that moved it) must not fail every step from then on: the error is retryable, and the retry
    prepares again."""
    from slct_workflows.runtime.db import is_retryable, with_db_retries
    from slct_workflows.runtime.fixed_sql import PreparedStatementsLost

    services.create_channel("ps-lost")
    _CHANNELS(["ps-lost"])
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    with pytest.raises(PreparedStatementsLost) as lost:
        with transaction.atomic():
            _CHANNELS(["ps-lost"])
    assert is_retryable(lost.value)
    assert [c.name for c in _CHANNELS(["ps-lost"])] == ["ps-lost"]  # prepared again, then lost again:
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")

    attempts = []

    def step():
        attempts.append(1)
        with transaction.atomic():
            return [c.name for c in _CHANNELS(["ps-lost"])]

    assert with_db_retries(step) == ["ps-lost"]
    assert len(attempts) == 2  # the first found them gone, the second prepared them again


@pytest.mark.django_db(transaction=True)
def test_a_prepare_that_waits_too_long_fails_the_step_retryably_not_with_a_missing_savepoint(postgres):
    """The step's first round trip carries its SAVEPOINT. If that round trip's PREPARE fails (here
    a lock timeout: another transaction holds the table), the SAVEPOINT was never sent, and the
    error that surfaces must be the lock timeout (retryable), not a failed ROLLBACK TO SAVEPOINT."""
    import psycopg

    from slct_workflows.runtime import group
    from slct_workflows.runtime.db import is_retryable

    other = psycopg.connect(dbname=connection.settings_dict["NAME"], host=connection.settings_dict["HOST"] or None,
                            port=connection.settings_dict["PORT"] or None, user=connection.settings_dict["USER"] or None,
                            autocommit=False)
    other.execute("LOCK TABLE slct_workflows_channel IN ACCESS EXCLUSIVE MODE")
    try:
        with pytest.raises(Exception) as failed:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '200ms'")
                group._savepoints.numbers = iter(range(1, 100))
                group._in_savepoint(lambda: _CHANNELS(["ps-x", "ps-y"]))
    finally:
        other.rollback()
        other.close()
    assert getattr(failed.value.__cause__, "sqlstate", None) == "55P03", repr(failed.value)
    assert is_retryable(failed.value)


def test_a_column_whose_type_changed_under_a_prepared_select_is_prepared_again(postgres):
    """A migration that changes the type of a column a prepared SELECT returns makes every later
    EXECUTE fail ("cached plan must not change result type") until it is prepared again: the
    step fails retryably once, and the rerun prepares anew."""
    from slct_workflows.runtime.db import is_retryable
    from slct_workflows.runtime.fixed_sql import FixedValues, PreparedStatementsLost

    capacity = FixedValues(lambda names: Channel.objects.filter(name__in=names).values_list("name", "capacity"))
    services.create_channel("ps-alter", capacity=3)
    assert capacity(["ps-alter"]) == [("ps-alter", 3)]
    with pytest.raises(PreparedStatementsLost) as lost:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("ALTER TABLE slct_workflows_channel ALTER COLUMN capacity TYPE bigint")
            capacity(["ps-alter"])
    assert is_retryable(lost.value)
    with transaction.atomic():  # the rerun: the session's statements are dropped and prepared again
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE slct_workflows_channel ALTER COLUMN capacity TYPE bigint")
        assert capacity(["ps-alter"]) == [("ps-alter", 3)]
        transaction.set_rollback(True)  # leave the column as the migrations made it


def test_statement_names_are_ascii_identifiers():
    from slct_workflows.runtime.fixed_sql import _statement_name

    for sql in ['SELECT "naïve_table"."x" FROM "naïve_table" WHERE id = %s', "(SELECT 1) UNION (SELECT 2)",
                'UPDATE "slct_workflows_goroutine" SET "status" = %s WHERE "id" = %s']:
        name = _statement_name(sql)
        assert name.isascii() and name.replace("_", "").isalnum() and len(name) <= 63, name
    assert _statement_name("SELECT 1") != _statement_name("SELECT 2")
