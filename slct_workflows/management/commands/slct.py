"""`manage.py slct list|show|cancel|retry|resume|send|close`: the operator's CLI over the services.

A thin caller, like the REST views: every rule lives in slct_workflows.services and selectors; a
refusal (an SlctError: nothing was changed) becomes a one-line CommandError on stderr and exit 1.
"""
from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from slct_workflows import access, cli_format, clock, services

from slct_workflows.read import selectors
from slct_workflows.cli_sender import cli_sender
from slct_workflows.errors import SlctError
from slct_workflows.models import Event, EventKind, ProcessStatus

ACTIONS = ("list", "show", "cancel", "retry", "resume", "send", "close")


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= n <= 10_000:
        raise argparse.ArgumentTypeError(f"expected 1 to 10000, got {n}")
    return n


def _json_value(text: str) -> Any:
    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(text, parse_constant=constant)
    except ValueError as exc:
        raise CommandError(
            f"VALUE_JSON is not valid JSON ({exc}); quote it for the shell, e.g. '{{\"approved\": true}}' or '\"text\"'"
        ) from None


class Command(BaseCommand):
    help = (
        "Operate processes and channels from the shell: list, show, cancel, retry, resume; send into or close "
        "a channel. Tables by default, --json for scripts. See docs/OPERATIONS.md, Operator CLI."
    )
    # The operator reaches for this when something is wrong: it must not depend on the URL
    # configuration, the admin or the API importing cleanly (manage.py check / slct_check do that).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--json", action="store_true", help="print JSON (stable keys) instead of a table")
        sub = parser.add_subparsers(dest="action", required=True, metavar="{" + ",".join(ACTIONS) + "}")

        p = sub.add_parser("list", parents=[common], help="processes, newest first")
        p.add_argument("--status", action="append", choices=ProcessStatus.values,
                       help="only this status (repeat for several)")
        p.add_argument("--workflow", metavar="NAME", help="only processes of this definition")
        p.add_argument("--limit", type=_positive, default=50, metavar="N", help="at most N processes (default 50)")

        p = sub.add_parser("show", parents=[common], help="a process, its goroutines and recent events")
        p.add_argument("id")
        p.add_argument("--events", type=_positive, default=10, metavar="N", help="recent events to show (default 10)")

        p = sub.add_parser("cancel", parents=[common], help="cancel a running or failed process")
        p.add_argument("id")
        p.add_argument("--reason", default="", help="recorded in the process history")

        p = sub.add_parser("retry", parents=[common], help="a failed process: its failed goroutines run again")
        p.add_argument("id")

        p = sub.add_parser("resume", parents=[common], help="run the goroutines the runaway guard paused again")
        p.add_argument("id")

        p = sub.add_parser("send", parents=[common], help="send a JSON value into a channel, once per --key")
        p.add_argument("channel")
        p.add_argument("value", metavar="VALUE_JSON")
        p.add_argument("--key", help="idempotency key: the same key again sends nothing new (default: a new one)")
        p.add_argument("--no-wait", action="store_true",
                       help="refuse the send if nobody receives now (default: it waits for a receiver)")

        p = sub.add_parser("close", parents=[common], help="close a channel: goroutines blocked on it are woken")
        p.add_argument("channel")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            getattr(self, f"do_{action}")(**options)
        except SlctError as exc:
            raise CommandError(str(exc)) from None

    def out(self, options: dict[str, Any], data: Any, text: str) -> None:
        self.stdout.write(cli_format.dumps(data) if options["json"] else text)

    # -- processes ------------------------------------------------------------------------------

    def do_list(self, *, status=None, workflow=None, limit=50, **options: Any) -> None:
        now = clock.now()
        procs = list(selectors.processes(definition=workflow, statuses=status)[:limit])
        waiting = selectors.waiting_summary(procs, now)
        rows = [
            cli_format.process_row(p, [i["short"] for i in waiting.get(p.pk, {}).get("items", [])]) for p in procs
        ]
        self.out(options, {"processes": rows, "count": len(rows), "limit": limit},
                 cli_format.process_list(rows, now))

    def _detail(self, proc, events: int | None = None) -> dict[str, Any]:
        now = clock.now()
        recent = total = None
        if events is not None:
            history = selectors.history_events(proc)
            total = history.count()
            recent = list(reversed(history.reverse()[:events]))
        return cli_format.process_detail(proc, selectors.goroutines(proc), now, recent, total or 0)

    def do_show(self, *, id: str, events: int = 10, **options: Any) -> None:
        detail = self._detail(services.get_process(id), events)
        self.out(options, detail, cli_format.process_page(detail, clock.now()))

    def do_cancel(self, *, id: str, reason: str = "", **options: Any) -> None:
        who = f"manage.py slct by {cli_sender().os_user}"
        proc = services.cancel_process(id, f"{reason.strip()} ({who})" if reason.strip() else f"cancelled with {who}")
        self.out(options, self._detail(proc), f"cancelled process {proc.id} ({proc.definition})")

    def do_retry(self, *, id: str, **options: Any) -> None:
        proc = services.retry_process(id)
        detail = self._detail(proc)
        names = [g["name"] for g in detail["goroutines"] if g["status"] == "runnable"]
        self.out(options, detail, f"retrying process {proc.id}: {', '.join(names) or 'nothing'} runnable again")

    def do_resume(self, *, id: str, **options: Any) -> None:
        proc = services.resume_process(id)
        event = Event.objects.filter(process=proc, kind=EventKind.RESUME).order_by("-seq").first()
        names = (event.detail or {}).get("goroutines", []) if event else []
        self.out(options, self._detail(proc), f"resumed process {proc.id}: {', '.join(names)} runnable again")

    # -- channels -------------------------------------------------------------------------------

    def do_send(self, *, channel: str, value: str, key: str | None = None, no_wait: bool = False,
                **options: Any) -> None:
        parsed = _json_value(value)
        result = services.send(channel, parsed, key or f"cli-{uuid.uuid4().hex}", wait=not no_wait,
                               sender=cli_sender())
        sent = cli_format.send_dict(result.send, result.repeated)
        self.out(options, sent, cli_format.send_line(sent))

    def do_close(self, *, channel: str, **options: Any) -> None:
        before = selectors.channel(services.get_channel(channel))
        if not services.close_channel(channel, sender=cli_sender()):
            raise CommandError(f"channel {channel!r} is already closed; nothing changed")
        chan = services.get_channel(channel)
        data = cli_format.channel_dict(chan, selectors.channel(chan), access.effective_policy(chan).policy, True)
        self.out(options, data, (
            f"closed channel {channel}: woke {len(before.receivers)} receiver(s) and {len(before.senders)} "
            f"sender(s); {len(before.buffer)} buffered value(s) still go to receivers"
        ))
