"""Deferred writes (runtime/fixed_sql.py: `defer`, `deferring`, `Statement.sent`, `Conflict`).

Inside `deferring()` a `defer`red write waits for the next statement: a fixed_sql read or write
carries it in its own round trip (PostgreSQL), any other query (a plain ORM read) sends it first
through the connection's execute wrapper, so every read sees it. Leaving the block sends what is
left; an exception inside drops it (its transaction or savepoint is rolled back anyway).
A conditional write (`expect=`, `conflict=`) that finds its row changed raises `Conflict`, which
`runtime.db.is_retryable` retries.

Real database, real statements: only the row counts and what was sent are observed.
"""
from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from slct_workflows.models import Channel
from tests.sql_log import sent
from slct_workflows.runtime.db import is_retryable
from slct_workflows.runtime.fixed_sql import (
    Conflict,
    FixedValues,
    FixedWrite,
    Statement,
    defer,
    deferring,
    execute_together,
)

pytestmark = pytest.mark.django_db

_SET_CAPACITY = FixedWrite(Channel, where="name", set=["capacity"])
_CAPACITY = FixedValues(lambda name: Channel.objects.filter(name=name).values_list("capacity"))


def _channel(name: str, capacity: int = 0) -> None:
    Channel.objects.create(name=name, capacity=capacity)


def _capacity(name: str) -> int:
    return Channel.objects.values_list("capacity", flat=True).get(pk=name)


def _sql(ctx: CaptureQueriesContext) -> list[str]:
    return sent(ctx.captured_queries, ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK"))


def test_a_deferred_write_waits_and_a_plain_orm_read_sends_it_first():
    _channel("dw-orm")
    with CaptureQueriesContext(connection) as ctx, deferring():
        st = _SET_CAPACITY.statement("dw-orm", capacity=5, expect=1)
        defer(st)
        assert not st.sent and _sql(ctx) == []  # nothing went to the database yet
        seen = _capacity("dw-orm")  # a query not sent through fixed_sql
        assert seen == 5, "the ORM read did not see the deferred write"
        assert st.sent
    sent = _sql(ctx)
    # The UPDATE went first, on its own, then the ORM's SELECT; sent once (the block's end had
    # nothing left to send).
    assert len(sent) == 2 and sent[0].startswith("UPDATE") and sent[1].startswith("SELECT")
    assert _capacity("dw-orm") == 5


def test_a_deferred_write_travels_with_the_next_fixed_sql_read():
    _channel("dw-fixed")
    with deferring():
        st = _SET_CAPACITY.statement("dw-fixed", capacity=7, expect=1)
        defer(st)
        with CaptureQueriesContext(connection) as ctx:
            rows = _CAPACITY("dw-fixed")
        assert rows == [(7,)], "the fixed_sql read did not see the deferred write"
        assert st.sent
        sent = _sql(ctx)
        if connection.vendor == "postgresql":
            # One round trip: the UPDATE and the SELECT in one query string.
            assert len(sent) == 1 and "UPDATE" in sent[0] and "SELECT" in sent[0]
            assert sent[0].index("UPDATE") < sent[0].index("SELECT")
        else:
            assert len(sent) == 2 and sent[0].startswith("UPDATE")


def test_a_deferred_write_travels_with_the_next_fixed_sql_write_in_order():
    _channel("dw-w")
    with deferring():
        first = _SET_CAPACITY.statement("dw-w", capacity=1, expect=1)
        defer(first)
        second = _SET_CAPACITY.statement("dw-w", capacity=2, expect=1)
        with CaptureQueriesContext(connection) as ctx:
            execute_together([second])
        assert first.sent and second.sent
        assert len(_sql(ctx)) == (1 if connection.vendor == "postgresql" else 2)
    assert _capacity("dw-w") == 2  # the deferred one ran first, the later write won


def test_leaving_the_block_sends_what_is_left():
    _channel("dw-end")
    with deferring():
        st = _SET_CAPACITY.statement("dw-end", capacity=3, expect=1)
        defer(st)
        assert not st.sent
    assert st.sent
    assert _capacity("dw-end") == 3


def test_a_nested_block_is_the_outer_block():
    _channel("dw-nested")
    with deferring():
        with deferring():
            st = _SET_CAPACITY.statement("dw-nested", capacity=4, expect=1)
            defer(st)
        assert not st.sent  # the inner block's end is not the end
        with connection.cursor() as cursor:  # a raw query sends it first, as an ORM one would
            cursor.execute("SELECT capacity FROM slct_workflows_channel WHERE name = %s", ["dw-nested"])
            assert cursor.fetchone()[0] == 4
        assert st.sent


def test_outside_a_block_defer_writes_at_once():
    _channel("dw-now")
    st = _SET_CAPACITY.statement("dw-now", capacity=9, expect=1)
    defer(st)
    assert st.sent
    assert _capacity("dw-now") == 9


def test_an_exception_inside_the_block_drops_the_deferred_writes():
    _channel("dw-drop")
    with transaction.atomic():
        st = _SET_CAPACITY.statement("dw-drop", capacity=8, expect=1)
        with pytest.raises(RuntimeError, match="the step raised"), deferring():
            defer(st)
            raise RuntimeError("the step raised")
        assert not st.sent
        # Still inside the transaction: nothing was written, not even rolled back later.
        assert _capacity("dw-drop") == 0
        # The next block starts empty: the dropped write does not come back with its first query.
        with deferring():
            assert _capacity("dw-drop") == 0
        assert not st.sent
    assert _capacity("dw-drop") == 0


def test_a_dropped_write_in_a_rolled_back_atomic_leaves_nothing():
    _channel("dw-atomic")
    sent_then_dropped = _SET_CAPACITY.statement("dw-atomic", capacity=6, expect=1)
    never_sent = _SET_CAPACITY.statement("dw-atomic", capacity=11, expect=1)
    with pytest.raises(RuntimeError), transaction.atomic(), deferring():
        defer(sent_then_dropped)
        assert _capacity("dw-atomic") == 6  # sent by the read
        defer(never_sent)
        raise RuntimeError("rolled back")
    assert sent_then_dropped.sent and not never_sent.sent
    assert _capacity("dw-atomic") == 0  # the sent one rolled back with its atomic, the other never went


def test_a_conditional_write_that_misses_its_row_raises_conflict_and_calls_back():
    _channel("dw-c", capacity=1)
    called = []
    st = Statement(
        "UPDATE slct_workflows_channel SET capacity = %s WHERE name = %s AND capacity = %s", [5, "dw-c", 99], 1,
        "channel dw-c", conflict=lambda: called.append("conflict"),
    )
    with transaction.atomic():
        with pytest.raises(Conflict, match="channel dw-c: changed by another transaction"):
            execute_together([st])
        assert st.sent and called == ["conflict"]
        assert _capacity("dw-c") == 1  # 0 rows: nothing changed, and the transaction still works
    assert is_retryable(Conflict("x"))
    assert isinstance(Conflict("x"), DatabaseError)


def test_conflict_true_raises_conflict_without_a_callback():
    st = Statement("UPDATE slct_workflows_channel SET capacity = 1 WHERE name = %s", ["dw-none"], 1, "none",
                   conflict=True)
    with pytest.raises(Conflict):
        execute_together([st])


def test_a_wrong_count_without_conflict_is_a_plain_error_not_retried():
    st = Statement("UPDATE slct_workflows_channel SET capacity = 1 WHERE name = %s", ["dw-missing"], 1, "plain")
    with pytest.raises(DatabaseError) as info:
        execute_together([st])
    assert not isinstance(info.value, Conflict)
    assert "plain: 0 rows written, expected 1" in str(info.value)
    assert not is_retryable(info.value)


def test_a_deferred_conflict_raises_from_the_read_that_sends_it():
    _channel("dw-dc")
    called = []
    st = _SET_CAPACITY.statement("dw-gone", capacity=2, expect=1, conflict=lambda: called.append(1))
    with transaction.atomic():
        with pytest.raises(Conflict), deferring():
            defer(st)
            Channel.objects.filter(pk="dw-dc").exists()  # the ORM query sends it first: 0 rows
        assert called == [1] and st.sent
    # The block was left by the exception: a new one starts with nothing pending.
    with deferring():
        assert Channel.objects.filter(pk="dw-dc").exists()
