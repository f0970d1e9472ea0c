"""Close Slack questions their processes have moved past, and update their messages.

Normally not needed (timeouts, cancels and finished processes are noticed as they happen); use it
after an outage, or if a question's goroutine left through a case of its own.
"""
from django.core.management.base import BaseCommand

from slack_integration import services


class Command(BaseCommand):
    help = "Reconcile open Slack questions with their processes (chat.update for the closed ones)."

    def add_arguments(self, parser):
        parser.add_argument("--limit", type=int, default=10_000, help="at most this many open questions")

    def handle(self, *args, limit: int, **options):
        closed = services.sync_all(limit=limit)
        self.stdout.write(f"{closed} question(s) closed")
