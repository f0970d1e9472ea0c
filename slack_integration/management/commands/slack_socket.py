"""Receive Slack's button clicks, answer forms and `/slct` over Socket Mode (no public URL).

Needs SLACK_APP_TOKEN (an app-level token, xapp-..., with the `connections:write` scope) and
SLACK_BOT_TOKEN (for the replies and message updates, as with the HTTP endpoints). Runs until
SIGTERM or SIGINT; envelopes being handled are finished and acknowledged before it exits.
"""
from __future__ import annotations

import signal
import threading

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from slack_integration import client, conf
from slack_integration.socket_mode import SocketMode


class Command(BaseCommand):
    help = "Connect to Slack in Socket Mode and handle interactivity and /slct (see docs/SLACK.md)."

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int, default=10, help="envelopes handled at once (threads)")
        parser.add_argument("--ping-interval", type=float, default=5.0,
                            help="seconds between WebSocket pings (a connection silent for 4 intervals is replaced)")

    def handle(self, *args, concurrency: int, ping_interval: float, **options):
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1")
        try:
            token = conf.app_token()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if not token:
            raise CommandError("SLACK_APP_TOKEN is not set: Socket Mode needs the app-level token (xapp-...); "
                               "see docs/SLACK.md")
        if not client.configured():
            self.stderr.write("SLACK_BOT_TOKEN is not set: answers are taken, but nothing is posted or updated in Slack")

        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())

        sm = SocketMode(token, concurrency=concurrency, ping_interval=ping_interval)
        try:
            try:
                sm.connect()
            except Exception as exc:
                raise CommandError(f"Socket Mode: could not connect: {exc}") from None
            self.stdout.write(f"Socket Mode connected (api {conf.api_url()}); waiting for Slack", ending="\n")
            self.stdout.flush()
            stop.wait()
            self.stdout.write("Socket Mode: stopping")
        finally:
            sm.close()
        self.stdout.write(f"Socket Mode stopped ({sm.handled} envelope(s) acknowledged)")
