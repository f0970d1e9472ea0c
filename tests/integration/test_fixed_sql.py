"""FixedQuery: a hot-path read compiled once returns exactly what its queryset returns."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from slct_workflows import services
from slct_workflows.runtime.fixed_sql import FixedQuery, FixedValues
from slct_workflows.models import Channel, Goroutine
from tests.sql_log import sent

pytestmark = pytest.mark.django_db


def test_results_match_the_queryset_for_scalars_and_lists(runner):
    pids = [runner.start("counter", {"idle_seconds": 60, "channel": f"fx-{i}"}) for i in range(3)]
    by_process = FixedQuery(lambda pid: Goroutine.objects.filter(process_id=pid))
    for pid in pids:
        got = by_process(pid)
        assert [(g.pk, g.name, g.status, g.next_source) for g in got] == [
            (g.pk, g.name, g.status, g.next_source) for g in Goroutine.objects.filter(process_id=pid)
        ]
    channels = FixedQuery(lambda names: Channel.objects.filter(name__in=names).order_by("name"))
    assert [c.name for c in channels(["fx-2", "fx-0"])] == ["fx-0", "fx-2"]
    assert [c.name for c in channels(["fx-1"])] == ["fx-1"]
    assert channels(["nope", "none"]) == []


def test_the_sql_is_built_once_per_shape():
    services.create_channel("fx-a")
    channels = FixedQuery(lambda names: Channel.objects.filter(name__in=names))
    for _ in range(3):
        channels(["fx-a"])
    channels(["fx-a", "fx-b"])
    assert len(channels.values.compiled) == 2  # one list length each
    with CaptureQueriesContext(connection) as ctx:
        channels(["fx-a"])
    assert len(ctx.captured_queries) == 1


def test_a_builder_with_a_constant_parameter_is_refused():
    # The constant would be frozen into the cached statement's parameters: refused at first use.
    bad = FixedQuery(lambda pid: Goroutine.objects.filter(process_id=pid, status="blocked"))
    with pytest.raises(RuntimeError, match="not only its placeholders"):
        bad("x")


def _process(pid: str = "fx-p"):
    from slct_workflows.models import ProcessInstance

    proc = ProcessInstance.objects.create(id=pid, definition="counter", state={"a": 1})
    g = Goroutine.objects.create(process=proc, name="Main", next_method="Main_Start")
    return proc, g


def test_fixed_save_writes_every_column_like_save_and_sends_the_signals():
    from django.db.models.signals import post_save, pre_save

    from slct_workflows.runtime.fixed_sql import FixedSave
    from slct_workflows.models import ProcessInstance

    proc, _ = _process()
    seen = []

    def on_save(sender, instance, **kwargs):
        seen.append((kwargs.get("created"), instance.pk))

    pre_save.connect(on_save, sender=ProcessInstance)
    post_save.connect(on_save, sender=ProcessInstance)
    try:
        before = ProcessInstance.objects.get(pk=proc.pk).updated_at
        proc.state = {"emoji": "✓ 🎉", "nested": [1, None, {"x": "y"}]}
        proc.output, proc.step_count, proc.error = None, 7, "e"
        FixedSave(ProcessInstance)(proc)
    finally:
        pre_save.disconnect(on_save, sender=ProcessInstance)
        post_save.disconnect(on_save, sender=ProcessInstance)
    fresh = ProcessInstance.objects.get(pk=proc.pk)
    assert fresh.state == {"emoji": "✓ 🎉", "nested": [1, None, {"x": "y"}]}
    assert (fresh.output, fresh.step_count, fresh.error) == (None, 7, "e")
    assert fresh.updated_at >= before  # auto_now, as save() does it
    assert seen == [(None, proc.pk), (False, proc.pk)]


def test_fixed_save_of_a_row_that_is_gone_raises():
    from django.db import DatabaseError

    from slct_workflows.runtime.fixed_sql import FixedSave
    from slct_workflows.models import ProcessInstance

    proc, _ = _process()
    ProcessInstance.objects.filter(pk=proc.pk).delete()
    with pytest.raises(DatabaseError, match="0 rows written, expected 1"):
        FixedSave(ProcessInstance)(proc)


def test_fixed_insert_and_write_store_what_the_orm_would():
    from slct_workflows.runtime.fixed_sql import FixedInsert, FixedWrite
    from slct_workflows.models import PendingCase

    services.create_channel("fx-c")
    _, g = _process()
    FixedInsert(PendingCase)([
        PendingCase(goroutine=g, wait_seq=3, case_index=i, kind="send", channel_id="fx-c", value={"v": i, "s": "é"},
                    target="Main_Sent")
        for i in range(3)
    ])
    rows = list(PendingCase.objects.filter(goroutine=g).order_by("case_index"))
    assert [(r.case_index, r.value, r.wait_seq, r.kind) for r in rows] == [
        (i, {"v": i, "s": "é"}, 3, "send") for i in range(3)
    ]
    assert all(r.created_at is not None for r in rows)  # auto_now_add, as the ORM fills it

    fire = FixedWrite(Goroutine, where="id", set=["status", "next_value", "next_source"], increment=["wait_seq"])
    assert fire(g.pk, status="runnable", next_value=[1, "two"], next_source=None) == 1
    g2 = Goroutine.objects.get(pk=g.pk)
    assert (g2.status, g2.next_value, g2.next_source, g2.wait_seq) == ("runnable", [1, "two"], None, g.wait_seq + 1)
    assert FixedWrite(PendingCase, where="goroutine", delete=True)(g.pk) == 3
    assert not PendingCase.objects.filter(goroutine=g).exists()


def test_writes_executed_together_all_land_in_one_round_trip_on_postgresql():
    from slct_workflows.runtime.fixed_sql import FixedInsert, FixedSave, execute_together
    from slct_workflows.models import Event, ProcessInstance

    proc, g = _process()
    proc.step_count, g.status = 3, "blocked"
    from django.utils import timezone

    now = timezone.now()
    event = Event(process=proc, seq=3, kind="step", goroutine="Main", method="Main_Start", value={"v": "ü"},
                  started_at=now, finished_at=now)
    with CaptureQueriesContext(connection) as ctx:
        with FixedSave(ProcessInstance).saving(proc) as a, FixedSave(Goroutine).saving(g) as b:
            execute_together([a, b, FixedInsert(Event).statement([event])])
    writes = sent(ctx.captured_queries, ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))
    assert len(writes) == (1 if connection.vendor == "postgresql" else 3)
    assert ProcessInstance.objects.get(pk=proc.pk).step_count == 3
    assert Goroutine.objects.get(pk=g.pk).status == "blocked"
    assert Event.objects.get(process=proc, seq=3).value == {"v": "ü"}


def test_a_write_together_that_misses_its_row_raises_and_names_it():
    from django.db import DatabaseError, transaction

    from slct_workflows.runtime.fixed_sql import FixedSave, execute_together
    from slct_workflows.models import ProcessInstance

    proc, g = _process()
    Goroutine.objects.filter(pk=g.pk).delete()
    with pytest.raises(DatabaseError, match=r"Goroutine \d+: 0 rows written"):
        with transaction.atomic():
            with FixedSave(ProcessInstance).saving(proc) as a, FixedSave(Goroutine).saving(g) as b:
                execute_together([a, b])


def test_fixed_write_with_a_composite_key_touches_only_that_row():
    from slct_workflows.runtime.fixed_sql import FixedWrite
    from slct_workflows.models import BufferedValue

    services.create_channel("fx-buf", capacity=3)
    for i in range(3):
        services.send("fx-buf", i, key=f"fxb{i}")
    seqs = list(BufferedValue.objects.filter(channel_id="fx-buf").order_by("seq").values_list("seq", flat=True))
    assert FixedWrite(BufferedValue, where=["channel", "seq"], delete=True)(("fx-buf", seqs[1])) == 1
    assert list(BufferedValue.objects.filter(channel_id="fx-buf").order_by("seq").values_list("value", flat=True)) == [0, 2]


def test_reads_together_are_one_round_trip_on_postgresql_and_match_reading_one_by_one():
    from slct_workflows.runtime.fixed_sql import read_together

    services.create_channel("fx-r1")
    services.create_channel("fx-r2", capacity=2)
    services.send("fx-r2", {"a": 1}, key="fxr")
    from slct_workflows.models import BufferedValue

    chans = FixedQuery(lambda names: Channel.objects.filter(name__in=names).order_by("name"))
    buffers = FixedValues(
        lambda names: BufferedValue.objects.filter(channel_id__in=names).values_list("channel_id", "value")
    )
    with CaptureQueriesContext(connection) as ctx:
        got_chans, got_buffers = read_together((chans, (["fx-r1", "fx-r2"],)), (buffers, (["fx-r2"],)))
    assert [c.name for c in got_chans] == ["fx-r1", "fx-r2"] and got_chans[1].capacity == 2
    assert got_buffers == [("fx-r2", {"a": 1})]
    assert len(sent(ctx.captured_queries)) == (1 if connection.vendor == "postgresql" else 2)


@pytest.mark.django_db(transaction=True)
def test_a_read_sent_with_a_lock_sees_what_the_previous_lock_holder_committed():
    """The step reads a process's goroutines in the same round trip as the process lock. The
    second statement must start after the lock is granted: a goroutine changed by the previous
    holder of the lock is seen changed, never as it was when the round trip was sent."""
    import threading
    import time

    from django.db import transaction

    from slct_workflows.runtime.engine import _GOROUTINES, _LOCK_PROCESS
    from slct_workflows.runtime.fixed_sql import read_together
    from slct_workflows.models import ProcessInstance

    proc, g = _process("fx-lock")
    locked, seen = threading.Event(), {}

    def holder():
        try:
            with transaction.atomic():
                ProcessInstance.objects.select_for_update().get(pk=proc.pk)
                Goroutine.objects.filter(pk=g.pk).update(status="blocked", wait_seq=41)
                locked.set()
                time.sleep(0.5)  # the reader's round trip is sent meanwhile, and waits on the lock
        finally:
            connection.close()  # this thread's own connection

    t = threading.Thread(target=holder)
    t.start()
    assert locked.wait(10)
    started = time.monotonic()
    with transaction.atomic():
        found, goroutines = read_together((_LOCK_PROCESS, (g.pk,)), (_GOROUTINES, (g.pk,)))
        seen["g"] = [(x.status, x.wait_seq) for x in goroutines]
    waited = time.monotonic() - started
    t.join()
    assert waited > 0.3, "the read did not wait for the lock: the race was not exercised"
    assert found and found[0].pk == proc.pk
    assert seen["g"] == [("blocked", 41)]


def test_arguments_reach_their_places_when_django_reorders_the_filters():
    # Django puts `id > %s` before `kind = %s` here, not in the order the builder wrote them.
    from slct_workflows.models import PendingCase

    _, g = _process()
    services.create_channel("fx-o")
    PendingCase.objects.bulk_create([
        PendingCase(goroutine=g, wait_seq=1, case_index=i, kind=kind, channel_id="fx-o", target="Main_X")
        for i, kind in enumerate(["send", "recv", "send", "send"])
    ])
    first = PendingCase.objects.filter(channel_id="fx-o").order_by("id").first().id
    after = FixedValues(
        lambda chan, kind, after: PendingCase.objects.filter(channel_id=chan, kind=kind, id__gt=after)
        .order_by("id").values_list("case_index")
    )
    assert after("fx-o", "send", first) == [(2,), (3,)]
    assert after("fx-o", "recv", first) == [(1,)]


def test_instances_are_built_as_the_queryset_builds_them_and_init_receivers_still_run(runner):
    """FixedQuery builds whole-row instances without Model.__init__ (fixed_sql._plain_instances):
    the same attributes and state as the queryset's; a pre_init/post_init receiver makes it go
    through Model.from_db again, so the receiver sees every instance."""
    from django.db.models.signals import post_init

    pid = runner.start("counter", {"idle_seconds": 60, "channel": "fx-init"})
    by_process = FixedQuery(lambda p: Goroutine.objects.filter(process_id=p).order_by("id"))
    fixed, orm = by_process(pid), list(Goroutine.objects.filter(process_id=pid).order_by("id"))
    assert by_process.plain is True and fixed
    for a, b in zip(fixed, orm):
        assert {k: v for k, v in vars(a).items() if k != "_state"} == {k: v for k, v in vars(b).items() if k != "_state"}
        assert (a._state.adding, a._state.db) == (b._state.adding, b._state.db) == (False, "default")
        assert a.process.pk == pid  # the relation loads as usual
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.pk)

    post_init.connect(receiver, sender=Goroutine)
    try:
        again = by_process(pid)
    finally:
        post_init.disconnect(receiver, sender=Goroutine)
    assert seen == [g.pk for g in again] and seen
