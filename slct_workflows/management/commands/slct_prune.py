import re
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from slct_workflows import conf, retention

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")


def parse_age(text: str) -> timedelta:
    """`7` or `7d` (days), `12h`, `30m`, `90s`, `2w`."""
    found = AGE.match(text.strip().lower())
    if not found:
        raise CommandError(f"--older-than: {text!r} is not an age; give days (7) or a number with s, m, h, d or w (12h, 7d)")
    try:
        return timedelta(**{UNITS[found[2] or "d"]: float(found[1])})
    except OverflowError:
        raise CommandError(f"--older-than: {text!r} is too long") from None


def positive(name: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise CommandError(f"{name}: {text!r} is not a whole number") from None
        if value < 1:
            raise CommandError(f"{name} must be at least 1, got {value}")
        return value
    return parse


class Command(BaseCommand):
    help = (
        "Delete finished processes (done, cancelled, failed) older than SLCT_RETENTION_DAYS with their "
        "history and the channels only they used, in batches (docs/OPERATIONS.md, Retention). The leading "
        "worker does this on its own every SLCT_RETENTION_INTERVAL seconds; this is the on-demand one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
        parser.add_argument("--older-than", metavar="AGE",
                            help="days (7) or 12h, 7d, 2w; default SLCT_RETENTION_DAYS; 0 keeps everything")
        parser.add_argument("--batch", metavar="N", help="processes per transaction (default SLCT_RETENTION_BATCH)")
        parser.add_argument("--max-batches", metavar="N", help="stop after N batches (default: until none is left)")

    def handle(self, *args, dry_run=False, older_than=None, batch=None, max_batches=None, **options):
        # Arguments are checked here rather than by argparse types, so call_command's keyword
        # arguments get the same checks and errors.
        age = parse_age(str(older_than)) if older_than is not None else None
        limit = positive("--max-batches")(str(max_batches)) if max_batches is not None else None
        try:
            size = positive("--batch")(str(batch)) if batch is not None else conf.retention_batch()
            if age is None:
                age = timedelta(days=conf.retention_days())
        except ImproperlyConfigured as exc:  # a bad setting: one line, not a traceback
            raise CommandError(str(exc)) from None
        report = retention.prune(age, dry_run=dry_run, batch=size, max_batches=limit)
        if report.disabled:
            self.stdout.write("retention is off (an age of 0 keeps everything): nothing deleted")
            return
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"{verb} (finished before {report.cutoff.isoformat()}, {report.batches} batches of up to {size}):")
        for name, n in report.counts.items():  # other tables a cascade reached: by model label
            self.stdout.write(f"  {name.ljust(15)}  {n}")
