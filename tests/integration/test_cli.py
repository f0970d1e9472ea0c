"""`manage.py slct`: the operator CLI over the services (docs/OPERATIONS.md, Operator CLI).

Each subcommand's table, its --json (valid, stable keys) and its refusals: an unknown id, bad
JSON, a wrong state, a private channel. A refusal is a CommandError (exit 1, one line on stderr)
and changes nothing in the database. The last test runs the real `python manage.py slct` for its
exit codes and streams.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from slct_workflows import ChannelPolicy, Process, register
from slct_workflows.cli_sender import os_user
from slct_workflows.models import Channel, Event, ExternalSend, Goroutine, ProcessInstance

from tests.conftest import ROOT, _worker_env

from . import workflows_for_tests  # noqa: F401  (registers the t-* definitions)

pytestmark = pytest.mark.django_db


@register("cli-spinner")
@dataclass
class Spinner:
    """Receives on `spin` without checking `p.closed`: once the channel closes it fires at once
    forever, and the runaway guard pauses it."""

    got: int = 0

    def Main_Start(self, p: Process, input=None):
        p.select().recv("spin").to(self.Main_Got)

    def Main_Got(self, p: Process, value=None):
        self.got += 1
        p.select().recv("spin").to(self.Main_Got)


@register("cli-private-holder")
@dataclass
class PrivateHolder:
    """Makes a private channel and waits on it."""

    chan: str = ""

    def Main_Start(self, p: Process, input=None):
        self.chan = p.make_chan(0)
        p.select().recv(self.chan).to(self.Main_Start)


@register("cli-restricted-receiver", channels={"cli-restricted": ChannelPolicy.restricted(permission="x.approve")})
@dataclass
class RestrictedReceiver:
    """Waits on a channel only holders of `x.approve` may send into over REST, Slack or the admin."""

    got: object = None

    def Main_Start(self, p: Process, input=None):
        p.select().recv("cli-restricted").to(self.Main_Got)

    def Main_Got(self, p: Process, value):
        p.finish(value)


def slct(*args: str) -> str:
    out = StringIO()
    call_command("slct", *args, stdout=out)
    return out.getvalue()


def slct_json(*args: str):
    return json.loads(slct(*args, "--json"))


def snapshot() -> dict:
    """Everything a refused command must leave as it was."""
    return {
        "processes": sorted(ProcessInstance.objects.values_list("id", "status", "step_count", "error")),
        "goroutines": sorted(Goroutine.objects.values_list("id", "status", "next_method", "attempts")),
        "events": Event.objects.count(),
        "sends": sorted(ExternalSend.objects.values_list("key", "status")),
        "channels": sorted(Channel.objects.values_list("name", "closed")),
    }


def refused(*args: str, match: str) -> None:
    before = snapshot()
    with pytest.raises(CommandError, match=match):
        slct(*args)
    assert snapshot() == before


def failed_flaky(runner, settings) -> str:
    settings.SLCT_MAX_ATTEMPTS = 1
    pid = runner.start("t-flaky", {"fail_times": 1})
    runner.assert_status(pid, "failed")
    return pid


# -- list and show ----------------------------------------------------------------------------------

def test_list_is_a_table_of_processes_with_what_they_wait_for(runner, settings):
    waiting = runner.start("t-receiver", {"chan": "cli-in", "n": 2}, id="cli-waiting")
    done = runner.start("t-child", {"n": 2}, id="cli-done")
    failed = failed_flaky(runner, settings)
    lines = slct("list").splitlines()
    assert lines[0].split() == ["ID", "WORKFLOW", "STATUS", "STEPS", "UPDATED", "WAITS", "FOR"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {waiting, done, failed}
    assert rows[waiting].split()[1:4] == ["t-receiver", "running", "2"]
    assert "recv cli-in" in rows[waiting]
    assert rows[done].split()[1:3] == ["t-child", "done"]
    assert rows[failed].endswith("error: goroutine Main, method Main_Start: RuntimeError: boom 1")

    only_running = slct("list", "--status", "running").splitlines()[1:]
    assert [line.split()[0] for line in only_running] == [waiting]
    assert [line.split()[0] for line in slct("list", "--workflow", "t-child").splitlines()[1:]] == [done]
    assert len(slct("list", "--limit", "2").splitlines()) == 3
    assert slct("list", "--workflow", "nothing-like-this") == "No processes.\n"


def test_list_json_has_stable_keys_and_filters(runner, settings):
    waiting = runner.start("t-receiver", {"chan": "cli-in", "n": 2}, id="cli-waiting")
    failed = failed_flaky(runner, settings)
    data = slct_json("list", "--status", "running", "--status", "failed", "--limit", "5")
    assert data["count"] == 2 and data["limit"] == 5
    by_id = {p["id"]: p for p in data["processes"]}
    assert set(by_id) == {waiting, failed}
    assert set(by_id[waiting]) == {"id", "definition", "version", "status", "step_count", "parent", "created_at",
                                  "updated_at", "finished_at", "waits_for", "error"}
    assert by_id[waiting]["waits_for"] == ["recv cli-in"] and by_id[waiting]["error"] is None
    assert by_id[failed]["status"] == "failed" and "boom 1" in by_id[failed]["error"]
    assert slct_json("list", "--status", "cancelled") == {"processes": [], "count": 0, "limit": 50}


def test_list_refuses_a_bad_limit_or_status(runner):
    with pytest.raises(CommandError, match="--limit"):
        slct("list", "--limit", "0")
    with pytest.raises(CommandError, match="--status"):
        slct("list", "--status", "sleeping")


def test_show_the_process_its_goroutines_and_recent_events(runner):
    pid = runner.start("t-two", id="cli-two")  # Main and Worker over a private channel: Worker closes it
    runner.assert_finished(pid)
    receiver = runner.start("t-receiver", {"chan": "cli-in", "n": 3}, id="cli-show")
    runner.send("cli-in", "one")
    page = slct("show", receiver, "--events", "2")
    assert "process   cli-show" in page and "status    running" in page and '"got": ["one"]' in page
    assert "Goroutines (1)" in page
    assert "Main waits to receive on `cli-in`, then Main_Got" in page
    assert "Recent events (2 of 3)" in page
    events = page.split("Recent events (2 of 3)\n")[1].splitlines()
    assert events[0].split() == ["SEQ", "KIND", "GOROUTINE", "METHOD", "CHANNEL", "AT", "ERROR"]
    assert [line.split()[:5] for line in events[1:]] == [
        ["2", "step", "Main", "Main_Start", "-"], ["3", "step", "Main", "Main_Got", "cli-in"],
    ]

    data = slct_json("show", receiver, "--events", "1")
    assert data["id"] == receiver and data["status"] == "running" and data["state"]["got"] == ["one"]
    assert [g["name"] for g in data["goroutines"]] == ["Main"]
    assert data["goroutines"][0]["pending_cases"] == [
        {"operation": "recv", "channel": "cli-in", "deadline": None, "target": "Main_Got"}
    ]
    assert data["events_total"] == 3 and [e["seq"] for e in data["events"]] == [3]  # the latest
    assert data["events"][0]["value"] == "one"

    two = slct_json("show", pid)
    assert {g["name"]: g["status"] for g in two["goroutines"]} == {"Main": "done", "Worker": "done"}
    assert two["output"] == [3, 2, 1, None] and two["status"] == "done"


def test_show_refuses_an_unknown_process(runner):
    refused("show", "no-such-process", match="unknown process 'no-such-process'")


# -- cancel, retry, resume --------------------------------------------------------------------------

def test_cancel_records_the_operator_and_refuses_a_finished_process(runner):
    pid = runner.start("t-sleeper", id="cli-sleeper")
    assert slct("cancel", pid, "--reason", "stuck in tests") == f"cancelled process {pid} (t-sleeper)\n"
    proc = ProcessInstance.objects.get(pk=pid)
    assert proc.status == "cancelled"
    assert Goroutine.objects.get(process=proc).status == "cancelled"
    event = Event.objects.get(process=proc, kind="cancel")
    assert event.detail == {"reason": f"stuck in tests (manage.py slct by {os_user()})"}

    refused("cancel", pid, match="is cancelled; only running or failed processes can be cancelled")
    finished = runner.start("t-child", {"n": 1})
    refused("cancel", finished, match="is done")
    refused("cancel", "nope", match="unknown process 'nope'")


def test_cancel_json_is_the_process(runner):
    pid = runner.start("t-sleeper")
    data = slct_json("cancel", pid)
    assert data["id"] == pid and data["status"] == "cancelled" and "events" not in data
    assert data["goroutines"][0]["status"] == "cancelled"
    assert Event.objects.get(process_id=pid, kind="cancel").detail == {
        "reason": f"cancelled with manage.py slct by {os_user()}"
    }


def test_retry_runs_a_failed_process_again_and_refuses_a_running_one(runner, settings):
    pid = failed_flaky(runner, settings)
    assert "error     goroutine Main, method Main_Start: RuntimeError: boom 1 (--json for the traceback)" in slct(
        "show", pid)
    assert slct("retry", pid) == f"retrying process {pid}: Main runnable again\n"
    assert Goroutine.objects.get(process_id=pid).status == "runnable"
    runner.run()  # the flaky step fails only once
    runner.assert_finished(pid, {"ok": True})
    refused("retry", pid, match="is done; only failed processes can be retried")

    again = runner.start("t-sleeper")
    refused("retry", again, match="is running")
    refused("retry", "nope", match="unknown process")


def test_retry_json(runner, settings):
    pid = failed_flaky(runner, settings)
    data = slct_json("retry", pid)
    assert data["status"] == "running" and data["error"] is None
    assert [g["status"] for g in data["goroutines"]] == ["runnable"]


def test_resume_runs_a_paused_goroutine_again_and_refuses_when_none_is_paused(runner, settings):
    settings.SLCT_RUNAWAY_STEPS = 5
    pid = runner.start("cli-spinner")
    refused("resume", pid, match="has no paused goroutines")
    runner.close("spin")  # its receive is now always ready: paused after 5 fires
    assert Goroutine.objects.get(process_id=pid).status == "paused"
    assert "paused by the runaway guard" in slct("show", pid)

    data = slct_json("resume", pid)
    assert [g["status"] for g in data["goroutines"]] == ["runnable"]
    assert Event.objects.get(process_id=pid, kind="resume").detail["goroutines"] == ["Main"]
    runner.run()  # the channel is still closed: paused again
    assert Goroutine.objects.get(process_id=pid).status == "paused"
    assert slct("resume", pid) == f"resumed process {pid}: Main runnable again\n"

    runner.cancel(pid)
    refused("resume", pid, match="is cancelled; only running processes can be resumed")
    refused("resume", "nope", match="unknown process")


# -- send and close ---------------------------------------------------------------------------------

def test_send_delivers_once_per_key_and_records_the_cli_as_sender(runner):
    pid = runner.start("t-receiver", {"chan": "cli-in", "n": 2})
    line = slct("send", "cli-in", '{"approved": true}', "--key", "k-1")
    assert line == f'sent {{"approved": true}} into cli-in: delivered to {pid}/Main (key k-1)\n'
    record = ExternalSend.objects.get(pk="k-1")
    assert record.status == "delivered" and record.value == {"approved": True}
    assert record.sender == {"via": "cli", "os_user": os_user()}

    again = slct_json("send", "cli-in", '{"approved": true}', "--key", "k-1")
    assert again == {**again, "key": "k-1", "status": "delivered", "repeated": True, "delivered_to": f"{pid}/Main"}
    assert ExternalSend.objects.count() == 1

    runner.run()
    data = slct_json("send", "cli-in", "2")  # a key is made up
    assert data["key"].startswith("cli-") and data["repeated"] is False and data["value"] == 2
    assert set(data) == {"key", "channel", "value", "status", "created_at", "delivered_at", "delivered_to",
                         "repeated"}
    runner.run()
    runner.assert_finished(pid, [{"approved": True}, 2])
    got = Event.objects.filter(process_id=pid, kind="step", method="Main_Got").order_by("seq").first()
    assert got.source["sender"] == {"via": "cli", "os_user": os_user()}


def test_send_waits_for_a_receiver_unless_told_not_to(runner):
    Channel.objects.create(name="cli-nobody")
    assert "waiting for a receiver" in slct("send", "cli-nobody", '"x"', "--key", "w-1")
    assert ExternalSend.objects.get(pk="w-1").status == "waiting"
    before = snapshot()
    with pytest.raises(CommandError, match="no receiver is waiting on channel 'cli-nobody'"):
        slct("send", "cli-nobody", '"y"', "--key", "w-2", "--no-wait")
    # As for REST, the refusal is remembered under its key (and in the channel's log); nothing else changes.
    assert snapshot() == {**before, "sends": sorted(before["sends"] + [("w-2", "no_receiver")]),
                          "events": before["events"] + 1}
    assert Event.objects.filter(kind="send", channel="cli-nobody").latest("id").detail["status"] == "no_receiver"


def test_send_refusals_change_nothing(runner):
    runner.start("t-receiver", {"chan": "cli-in", "n": 1})
    refused("send", "cli-in", "{approved: true}", match="VALUE_JSON is not valid JSON")
    refused("send", "cli-in", "NaN", match="VALUE_JSON is not valid JSON")
    refused("send", "no-such-channel", "1", match="unknown channel 'no-such-channel'")
    refused("send", "bad name!", "1", match="channel name must be")
    slct("send", "cli-in", "1", "--key", "used")
    refused("send", "cli-in", "2", "--key", "used", match="already used for another send")
    runner.close("cli-in")
    refused("send", "cli-in", "3", match="channel 'cli-in' is closed")


def test_the_cli_cannot_send_into_or_close_a_private_channel(runner):
    pid = runner.start("cli-private-holder")
    chan = ProcessInstance.objects.get(pk=pid).state["chan"]
    assert Channel.objects.get(pk=chan).policy == "private"
    refused("send", chan, "1", match=f"channel '{chan}' is private")
    refused("close", chan, match=f"channel '{chan}' is private")


def test_the_cli_is_trusted_on_a_restricted_channel(runner):
    pid = runner.start("cli-restricted-receiver")
    assert slct_json("send", "cli-restricted", '"ok"')["status"] == "delivered"
    runner.run()
    runner.assert_finished(pid, "ok")


def test_close_wakes_receivers_and_refuses_a_closed_or_unknown_channel(runner):
    pid = runner.start("t-closer", "cli-close")
    assert slct("close", "cli-close") == (
        "closed channel cli-close: woke 1 receiver(s) and 0 sender(s); 0 buffered value(s) still go to receivers\n"
    )
    assert Channel.objects.get(pk="cli-close").closed
    close_event = Event.objects.get(kind="close", channel="cli-close")
    assert close_event.source == {"external": "close", "sender": {"via": "cli", "os_user": os_user()}}
    runner.run()
    runner.assert_finished(pid, [[None, True]])

    refused("close", "cli-close", match="channel 'cli-close' is already closed; nothing changed")
    refused("close", "no-such-channel", match="unknown channel 'no-such-channel'")


def test_close_json(runner):
    Channel.objects.create(name="cli-json", capacity=2)
    data = slct_json("close", "cli-json")
    assert data == {**data, "name": "cli-json", "capacity": 2, "closed": True, "policy": "open", "changed": True}
    assert set(data) == {"name", "capacity", "closed", "owner", "policy", "created_at", "closed_at", "buffer",
                         "receivers", "senders", "changed"}


# -- the real command line ------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_the_command_line_exit_codes_and_streams(runner):
    """Two real runs (each starts Django: seconds on a loaded machine): JSON alone on stdout and
    exit 0; a refusal exits 1 with one line on stderr, nothing on stdout, the database unchanged."""
    pid = runner.start("t-sleeper", id="cli-subprocess")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "manage.py"), "slct", *args], cwd=ROOT, env=_worker_env(),
                              capture_output=True, text=True, timeout=60)

    ok = run("show", pid, "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["goroutines"][0]["pending_cases"][0]["operation"] == "timer"

    before = snapshot()
    unknown = run("cancel", "no-such-process", "--json")
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.strip() == "CommandError: unknown process 'no-such-process'"
    assert snapshot() == before
