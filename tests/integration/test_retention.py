"""Retention (slct_workflows/retention.py): old finished processes go with what only they used;
live processes and the channels they use stay; batches, dry runs, concurrent prunes, the command."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.utils import timezone

from slct_workflows import Process, clock, maintenance, register, retention, services
from slct_workflows.models import (
    BufferedValue, Channel, Event, ExternalSend, Goroutine, Outbox, OutboxStatus, PendingCase, ProcessInstance,
    ProcessStatus, SendStatus,
)
from ..conftest import ROOT, _worker_env, postgres_only

pytestmark = pytest.mark.django_db

OLD = timedelta(days=40)
KEEP = timedelta(days=30)
TABLES = [ProcessInstance, Goroutine, Event, PendingCase, ExternalSend, Outbox, BufferedValue, Channel]


@register("ret-maker")
@dataclass
class Maker:
    """Makes a private channel (buffering a value into it unless told not to) and finishes."""
    chan: str = ""

    def Main_Start(self, p: Process, input):
        self.chan = p.make_chan(1)
        if input and input.get("empty"):
            p.finish(self.chan)
            return
        p.select().send(self.chan, {"from": "maker"}).to(self.Main_Sent)

    def Main_Sent(self, p: Process):
        p.finish(self.chan)


@register("ret-waiter")
@dataclass
class Waiter:
    """Blocks on the channel named in its input."""

    def Main_Start(self, p: Process, input):
        p.select().recv(input["chan"]).to(self.Main_Got)

    def Main_Got(self, p: Process, value):
        p.finish(value)


@register("ret-keeper")
@dataclass
class Keeper:
    """Receives a channel name through a channel, keeps it in its state, waits on something else."""
    held: str = ""

    def Main_Start(self, p: Process, input):
        p.select().recv(input["handoff"]).to(self.Main_Hold)

    def Main_Hold(self, p: Process, value):
        self.held = value
        p.select().recv("ret-never").to(self.Main_Hold)


@register("ret-producer")
@dataclass
class Producer:
    """Makes a private channel, hands its name over through the buffered "ret-pipe", fills it and
    finishes: the channel outlives its owner, and only the pipe's buffer says who will use it."""
    chan: str = ""
    k: int = 0
    sent: int = 0

    def Main_Start(self, p: Process, input):
        self.k = input["k"]
        self.chan = p.make_chan(self.k)
        p.select().send("ret-pipe", self.chan).to(self.Main_Fill)

    def Main_Fill(self, p: Process):
        if self.sent == self.k:
            p.finish()
            return
        self.sent += 1
        p.select().send(self.chan, self.sent).to(self.Main_Fill)


@register("ret-consumer")
@dataclass
class Consumer:
    """Takes channel names from "ret-pipe" and drains each, `k` values, `n` channels."""
    n: int = 0
    k: int = 0
    cur: str = ""
    got: list = field(default_factory=list)

    def Main_Start(self, p: Process, input):
        self.n, self.k = input["n"], input["k"]
        p.select().recv("ret-pipe").to(self.Main_Chan)

    def Main_Chan(self, p: Process, chan):
        self.cur = chan
        p.select().recv(chan).to(self.Main_Value)

    def Main_Value(self, p: Process, value):
        assert not p.closed, f"{self.cur} is gone"
        self.got.append(value)
        if len(self.got) == self.n * self.k:
            p.finish(self.got)
        elif len(self.got) % self.k == 0:
            p.select().recv("ret-pipe").to(self.Main_Chan)
        else:
            p.select().recv(self.cur).to(self.Main_Value)


def _age(pid: str, by: timedelta = OLD) -> None:
    """Finished `by` ago (update() leaves updated_at alone: no auto_now)."""
    when = clock.now() - by
    ProcessInstance.objects.filter(pk=pid).update(finished_at=when, updated_at=when)


def _rows() -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in TABLES}


def _maker(runner, **input) -> tuple[str, str]:
    pid = runner.start("ret-maker", input or None)
    runner.assert_finished(pid)
    return pid, runner.output(pid)


def test_old_finished_processes_go_with_what_only_they_used(runner):
    old_done, old_chan = _maker(runner)
    recent_done, recent_chan = _maker(runner)
    cancelled = runner.start("ret-waiter", {"chan": "ret-named"})
    runner.cancel(cancelled)
    failed = runner.start("ret-waiter", {"chan": "ret-named-2"})
    ProcessInstance.objects.filter(pk=failed).update(status=ProcessStatus.FAILED)
    running = runner.start("ret-waiter", {"chan": "ret-named"})
    for pid in (old_done, cancelled):
        _age(pid)
    # A failed process has no finished_at: its last write counts.
    ProcessInstance.objects.filter(pk=failed).update(finished_at=None, updated_at=clock.now() - OLD)
    # Running for long: age does not matter.
    ProcessInstance.objects.filter(pk=running).update(created_at=clock.now() - OLD * 3,
                                                      updated_at=clock.now() - OLD * 3)
    _age(recent_done, timedelta(days=1))
    events_of_old = Event.objects.filter(process_id__in=[old_done, cancelled, failed]).count()
    goroutines_of_old = Goroutine.objects.filter(process_id__in=[old_done, cancelled, failed]).count()
    pending_of_old = PendingCase.objects.filter(goroutine__process_id=failed).count()
    assert events_of_old >= 6 and pending_of_old == 1

    report = retention.prune(KEEP)

    assert set(ProcessInstance.objects.values_list("id", flat=True)) == {recent_done, running}
    assert not Event.objects.filter(process_id__in=[old_done, cancelled, failed]).exists()
    assert not Channel.objects.filter(pk=old_chan).exists()
    assert Channel.objects.filter(pk=recent_chan).exists() and BufferedValue.objects.filter(channel_id=recent_chan).exists()
    # Named channels are shared: kept, and the running waiter still waits on its own.
    assert Channel.objects.filter(pk__in=["ret-named", "ret-named-2"]).count() == 2
    assert runner.waits(running) == {"Main": ["recv ret-named"]}
    assert report.counts["processes"] == 3
    assert report.counts["events"] == events_of_old
    assert report.counts["goroutines"] == goroutines_of_old
    assert report.counts["pending_cases"] == pending_of_old
    assert report.counts["channels"] == 1 and report.counts["buffered_values"] == 1
    assert report.batches == 1
    runner.send("ret-named", "still works")
    runner.assert_finished(running, "still works")


def test_channels_a_live_process_uses_are_kept_until_nothing_uses_them(runner):
    _, waited = _maker(runner, empty=True)  # a live process blocks on it
    _, handed = _maker(runner, empty=True)  # a live process keeps its name in its state
    maker, answered = _maker(runner, empty=True)  # a live process answers into it
    _, unused = _maker(runner, empty=True)
    waiter = runner.start("ret-waiter", {"chan": waited})
    keeper = runner.start("ret-keeper", {"handoff": "ret-handoff"})
    runner.send("ret-handoff", handed)
    assert runner.state(keeper)["held"] == handed
    child = ProcessInstance.objects.create(definition="ret-waiter", result_channel=answered, parent_id=maker)
    for pid in ProcessInstance.objects.filter(definition="ret-maker").values_list("id", flat=True):
        _age(pid)

    report = retention.prune(KEEP)

    assert report.counts["processes"] == 4 and report.counts["channels"] == 1
    assert not Channel.objects.filter(pk=unused).exists()
    assert set(Channel.objects.filter(pk__in=[waited, handed, answered]).values_list("name", flat=True)) == {
        waited, handed, answered}
    assert not ProcessInstance.objects.filter(pk=maker).exists()
    child.refresh_from_db()  # a live child of a deleted parent stays, with no parent
    assert (child.parent_id, child.status) == (None, ProcessStatus.RUNNING)
    assert runner.waits(waiter) == {"Main": [f"recv {waited}"]}

    # Once their users are gone too, the orphaned channels go (the orphan pass).
    for pid in (waiter, keeper):
        runner.cancel(pid)
        _age(pid)
    ProcessInstance.objects.filter(pk=child.pk).update(status=ProcessStatus.DONE)
    _age(child.pk)
    again = retention.prune(KEEP)
    assert again.counts["processes"] == 3
    assert not Channel.objects.filter(pk__in=[waited, handed, answered]).exists()
    assert again.counts["channels"] == 3


def test_a_name_in_transit_in_a_kept_channel_keeps_that_channel(runner):
    _, inner = _maker(runner, empty=True)
    services.create_channel("ret-mailbox", capacity=5)
    services.send("ret-mailbox", {"reply_to": inner}, key="k1")
    for pid in ProcessInstance.objects.values_list("id", flat=True):
        _age(pid)
    report = retention.prune(KEEP)
    assert report.counts["processes"] == 1
    assert Channel.objects.filter(pk=inner).exists()  # whoever reads the mailbox will use it


def test_pending_side_effects_keep_their_process_until_done(runner):
    pid, _ = _maker(runner)
    _age(pid)
    row = Outbox.objects.create(process_id=pid, func="builtins.print", status=OutboxStatus.PENDING)
    assert retention.prune(KEEP).processes == 0
    assert ProcessInstance.objects.filter(pk=pid).exists()
    Outbox.objects.filter(pk=row.pk).update(status=OutboxStatus.DONE)
    report = retention.prune(KEEP)
    assert report.processes == 1 and report.counts["outbox"] == 1
    assert not Outbox.objects.exists()


def test_slack_messages_external_sends_and_channel_events_go_too(runner):
    from slack_integration.models import SlackMessage

    pid, chan = _maker(runner, empty=True)
    SlackMessage.objects.create(process_id=pid, goroutine="Main", kind="notify", text="hi")
    services.create_channel("ret-shared")
    mine = ExternalSend.objects.create(key="to-mine", channel=chan, fingerprint="x", status=SendStatus.NO_RECEIVER)
    shared = ExternalSend.objects.create(key="to-shared", channel="ret-shared", fingerprint="x",
                                         status=SendStatus.NO_RECEIVER)
    now = clock.now()
    Event.objects.create(kind="close", channel=chan, started_at=now, finished_at=now)
    Event.objects.create(kind="close", channel="ret-shared", started_at=now, finished_at=now)
    _age(pid)
    report = retention.prune(KEEP)
    assert report.counts["slack_integration.SlackMessage"] == 1
    assert report.counts["external_sends"] == 1
    assert not SlackMessage.objects.exists()
    assert list(ExternalSend.objects.values_list("key", flat=True)) == [shared.key] != [mine.key]
    assert list(Event.objects.filter(process=None).values_list("channel", flat=True)) == ["ret-shared"]


def test_dry_run_deletes_nothing_and_reports_the_same_counts(runner):
    for _ in range(3):
        _maker(runner)
    _, used = _maker(runner, empty=True)
    runner.start("ret-waiter", {"chan": used})
    for pid in ProcessInstance.objects.filter(definition="ret-maker").values_list("id", flat=True):
        _age(pid)
    before = _rows()
    dry = retention.prune(KEEP, dry_run=True, batch=2)
    assert _rows() == before
    assert dry.dry_run and dry.processes == 4 and dry.batches == 2
    real = retention.prune(KEEP, batch=2)
    assert real.counts == dry.counts
    assert _rows()["ProcessInstance"] == before["ProcessInstance"] - 4


def test_batches_and_a_bounded_run(runner):
    for _ in range(5):
        pid, _ = _maker(runner)
        _age(pid)
    first = retention.prune(KEEP, batch=2, max_batches=1)
    assert (first.processes, first.batches) == (2, 1)
    assert first.more
    timed = retention.prune(KEEP, batch=1, seconds=0)  # one batch at least, then time is up
    assert (timed.processes, timed.batches, timed.more) == (1, 1, True)
    rest = retention.prune(KEEP, batch=2)
    assert (rest.processes, rest.batches, rest.more) == (2, 1, False)
    assert not ProcessInstance.objects.exists()


def test_zero_days_keeps_everything(runner, settings):
    pid, _ = _maker(runner)
    _age(pid, timedelta(days=3650))
    settings.SLCT_RETENTION_DAYS = "0"
    before = _rows()
    assert retention.prune().disabled
    assert retention.prune_some() == 0
    out = StringIO()
    call_command("slct_prune", stdout=out)
    assert "nothing deleted" in out.getvalue()
    assert _rows() == before
    settings.SLCT_RETENTION_DAYS = "3000"
    assert retention.prune().processes == 1


@pytest.mark.parametrize("name,value", [
    ("SLCT_RETENTION_DAYS", "-1"), ("SLCT_RETENTION_DAYS", "soon"), ("SLCT_RETENTION_DAYS", "nan"),
    ("SLCT_RETENTION_DAYS", "inf"), ("SLCT_RETENTION_BATCH", "0"), ("SLCT_RETENTION_BATCH", "1.5"),
])
def test_bad_settings_are_refused_and_change_nothing(runner, settings, name, value):
    pid, _ = _maker(runner)
    _age(pid, timedelta(days=3650))
    setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=name):
        retention.prune_some()
    with pytest.raises(CommandError, match=name):  # the command says it in one line
        call_command("slct_prune", stdout=StringIO())
    assert ProcessInstance.objects.filter(pk=pid).exists()


def test_a_bad_interval_fails_the_task_not_the_timer_loop(runner, settings):
    pid, _ = _maker(runner)
    _age(pid)
    settings.SLCT_RETENTION_INTERVAL = "hourly"
    task = next(t for t in maintenance.tasks() if t.name == "retention")
    assert task.every() == 3600.0  # the loop goes on with its other tasks
    with pytest.raises(ImproperlyConfigured, match="SLCT_RETENTION_INTERVAL"):
        task.func()
    assert ProcessInstance.objects.filter(pk=pid).exists()


def test_the_maintenance_task_runs_a_bounded_amount_and_returns_sooner_while_work_is_left(runner, settings):
    task = next(t for t in maintenance.tasks() if t.name == "retention")
    settings.SLCT_RETENTION_INTERVAL = "120"
    settings.SLCT_RETENTION_BATCH = "1"
    n = retention.MAINTENANCE_BATCHES + 1
    for _ in range(n):
        pid, _ = _maker(runner)
        _age(pid)
    first = task.func()
    assert 1 <= first <= retention.MAINTENANCE_BATCHES  # and no new batch after MAINTENANCE_SECONDS
    assert task.every() == retention.BACKLOG_INTERVAL
    total, runs = first, 1
    while ProcessInstance.objects.exists() and runs < n:
        total, runs = total + task.func(), runs + 1
    assert total == n and not ProcessInstance.objects.exists()
    assert task.func() == 0
    assert task.every() == 120.0  # the backlog is cleared: back to the interval


def test_the_command_prints_the_counts(runner):
    pid, _ = _maker(runner)
    _age(pid, timedelta(hours=13))
    out = StringIO()
    call_command("slct_prune", "--dry-run", "--older-than", "12h", stdout=out)
    assert "would delete" in out.getvalue()
    assert "  processes        1" in out.getvalue()
    assert ProcessInstance.objects.filter(pk=pid).exists()
    out = StringIO()
    call_command("slct_prune", "--older-than", "1d", "--batch", "10", stdout=out)
    assert "  processes        0" in out.getvalue()
    out = StringIO()
    call_command("slct_prune", "--older-than", "0.5", stdout=out)
    text = out.getvalue()
    assert text.startswith("deleted (finished before") and "  processes        1" in text
    assert "  events           3" in text and "  channels         1" in text
    assert not ProcessInstance.objects.exists()


@pytest.mark.parametrize("args,message", [
    (["--older-than", "soon"], "is not an age"),
    (["--older-than=-3d"], "is not an age"),
    (["--batch", "0"], "--batch must be at least 1"),
    (["--batch", "many"], "is not a whole number"),
    (["--max-batches", "0"], "--max-batches must be at least 1"),
])
def test_bad_arguments_are_refused_and_change_nothing(runner, args, message):
    pid, _ = _maker(runner)
    _age(pid)
    with pytest.raises(CommandError, match=message):
        call_command("slct_prune", *args, stdout=StringIO())
    assert ProcessInstance.objects.filter(pk=pid).exists()


def test_bad_arguments_exit_non_zero():
    # No database needed: the arguments are refused before any query.
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "slct_prune", "--older-than", "soon"],
                          cwd=ROOT, env=_worker_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "is not an age" in done.stderr


@pytest.mark.django_db(transaction=True)
def test_concurrent_prunes_share_the_work_without_failing():
    now = timezone.now()
    procs = [ProcessInstance(id=f"ret-c{i:04d}", definition="ret-maker", status=ProcessStatus.DONE,
                             finished_at=now - OLD) for i in range(120)]
    ProcessInstance.objects.bulk_create(procs)
    Event.objects.bulk_create([Event(process_id=p.id, seq=1, kind="finish", started_at=now, finished_at=now)
                               for p in procs])
    Channel.objects.bulk_create([Channel(name=f"chan-{p.id}", owner=p.id) for p in procs[::3]])
    live = ProcessInstance.objects.create(definition="ret-waiter", status=ProcessStatus.RUNNING)
    reports, errors = [], []
    start = threading.Barrier(3)

    def prune():
        try:
            start.wait()
            reports.append(retention.prune(KEEP, batch=7))
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=prune) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(reports) == 3
    assert sum(r.processes for r in reports) == 120
    assert sum(r.counts["events"] for r in reports) == 120
    assert sum(r.counts["channels"] for r in reports) == 40
    assert list(ProcessInstance.objects.values_list("id", flat=True)) == [live.id]
    assert not Channel.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_pruning_beside_live_work_keeps_every_channel_in_transit():
    """A pruner deletes each producer as soon as it has finished (an age of a microsecond) while
    the consumer has not yet read its channel: every value still arrives."""
    from slct_workflows.testing import WorkflowRunner

    n, k = 12, 3
    services.create_channel("ret-pipe", capacity=n)
    stop, errors, pruned = threading.Event(), [], []

    def pruner():
        try:
            while not stop.is_set():
                pruned.append(retention.prune(timedelta(microseconds=1), batch=5).processes)
                time.sleep(0.05)  # a pass every 50 ms: often enough to race every step
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=pruner)
    with WorkflowRunner(freeze=False) as runner:
        thread.start()
        try:
            producers = [runner.start("ret-producer", {"k": k}) for _ in range(n)]
            # Let the pruner catch up with the finished producers before anyone reads.
            deadline = time.monotonic() + 20
            while ProcessInstance.objects.filter(pk__in=producers).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not ProcessInstance.objects.filter(pk__in=producers).exists()
            assert Channel.objects.exclude(pk="ret-pipe").count() == n  # kept: named in the pipe's buffer
            consumer = runner.start("ret-consumer", {"n": n, "k": k})
            runner.assert_finished(consumer, list(range(1, k + 1)) * n)
        finally:
            stop.set()
            thread.join(30)
    assert errors == []
    assert sum(pruned) >= n
    # The drained channels' owners are gone and nobody uses them: the orphan pass takes them.
    last = retention.prune(timedelta(microseconds=1))
    assert set(Channel.objects.values_list("name", flat=True)) == {"ret-pipe"}
    assert last.processes + sum(pruned) == n + 1


def _insert_select(model, select: dict[str, str | tuple[str, list]], source: str, params: list) -> int:
    """INSERT INTO model's table SELECT ... FROM source: columns named in `select` get that SQL
    expression, every other column its field default as the ORM would write it (so the test
    keeps up with new columns). PostgreSQL does the rows, not Python: 20,000 in milliseconds."""
    now = timezone.now()
    columns, values, select_params = [], [], []
    for f in model._meta.local_concrete_fields:
        if f.column in select:
            sql, args = select[f.column] if isinstance(select[f.column], tuple) else (select[f.column], [])
            columns.append(f.column)
            values.append(sql)
            select_params += args
        elif not f.primary_key:
            value = now if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) else f.get_default()
            columns.append(f.column)
            values.append("%s")
            select_params.append(f.get_db_prep_save(value, connection))
    qn = connection.ops.quote_name
    sql = (f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(c) for c in columns)}) "
           f"SELECT {', '.join(values)} FROM {source}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*select_params, *params])
        return cursor.rowcount


def test_tens_of_thousands_pruned_in_batches_along_the_index():
    postgres_only("the plan and the volume are PostgreSQL's")
    n, live_n = 20_000, 1_000
    now = timezone.now()
    procs = "slct_workflows_processinstance p"
    _insert_select(ProcessInstance, {
        "id": "'ret-bulk-' || lpad(i::text, 5, '0')", "definition": "'ret-maker'",
        "status": "CASE WHEN i %% 2 = 0 THEN 'done' ELSE 'cancelled' END",
        "finished_at": ("%s - make_interval(secs => i)", [now - OLD]),
    }, "generate_series(0, %s) AS i", [n - 1])
    _insert_select(ProcessInstance, {
        "id": "'ret-live-' || lpad(i::text, 5, '0')", "definition": "'ret-waiter'", "status": "'running'",
        "updated_at": ("%s", [now - OLD * 2]),
    }, "generate_series(0, %s) AS i", [live_n - 1])
    assert _insert_select(Event, {"process_id": "p.id", "seq": "s", "kind": "'step'",
                                  "started_at": ("%s", [now]), "finished_at": ("%s", [now])},
                          f"{procs} CROSS JOIN generate_series(1, 2) AS s", []) == 2 * (n + live_n)
    assert _insert_select(Goroutine, {"process_id": "p.id", "name": "'Main'", "status": "'done'"},
                          f"{procs} WHERE p.status <> 'running'", []) == n
    assert _insert_select(Channel, {"name": "'chan-' || p.id", "owner": "p.id"},
                          f"{procs} WHERE p.id LIKE '%%0' AND p.status <> 'running'", []) == n // 10
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE slct_workflows_processinstance")

    with transaction.atomic():
        first = retention.batch_query(now - KEEP, 500).explain()
        later = retention.batch_query(now - KEEP, 500, after=(now - OLD - timedelta(seconds=n // 2), "x")).explain()
    for plan in (first, later):
        assert re.search(r"(Index Scan|Index Only Scan|Bitmap Index Scan) (using|on) slct_process_retention", plan), plan
        assert "Seq Scan on slct_workflows_processinstance" not in plan, plan

    report = retention.prune(KEEP, batch=500)
    assert report.processes == n and report.batches == n // 500
    assert report.counts["events"] == 2 * n and report.counts["goroutines"] == n
    assert report.counts["channels"] == n // 10
    assert ProcessInstance.objects.count() == live_n == ProcessInstance.objects.filter(status="running").count()
    assert Event.objects.count() == 2 * live_n
