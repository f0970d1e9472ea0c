"""Move goroutines of a definition from one status method to another (after a rename or removal)."""
from django.core.management.base import BaseCommand, CommandError

from slct_workflows import deploy


class Command(BaseCommand):
    help = (
        "Move every live goroutine of <definition> that will run <from_method> to <to_method>: "
        "runnable/failed goroutines' next method and blocked goroutines' pending cases. Validated "
        "first (nothing changes if the target cannot be called as each goroutine needs); then one "
        "locked transaction per process, recorded as a 'migrate' event in its history."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        # Our --version (of the definition) replaces Django's --version (of Django).
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("definition")
        parser.add_argument("from_method", help="e.g. Main_CheckApprove")
        parser.add_argument("to_method", help="e.g. Main_Review (same goroutine)")
        parser.add_argument("--version", dest="def_version", default=None, metavar="VERSION",
                            help="only processes started by this version of the definition ('' for unversioned)")
        parser.add_argument("--dry-run", action="store_true", help="show what would move, change nothing")

    def handle(self, *args, definition, from_method, to_method, def_version=None, dry_run=False, **options):
        try:
            report = deploy.migrate_status(definition, from_method, to_method, version=def_version, dry_run=dry_run)
        except deploy.MigrationError as exc:
            raise CommandError(str(exc)) from None
        verb = "would move" if dry_run else "moved"
        for move in report.moves:
            self.stdout.write(f"{definition} {move.process_id}: {verb} {move.describe()} {from_method} -> {to_method}")
        for pid, why in report.skipped.items():
            self.stdout.write(self.style.WARNING(f"{definition} {pid}: skipped, {why}"))
        n, m = len(report.moves), len(report.processes)
        where = f" (version {def_version})" if def_version else ""
        if not n:
            self.stdout.write(f"No live goroutine of {definition}{where} is at {from_method}; nothing to do.")
        else:
            self.stdout.write(self.style.SUCCESS(
                f"{'Dry run: ' if dry_run else ''}{verb} {n} goroutine{'s' if n != 1 else ''} in "
                f"{m} process{'es' if m != 1 else ''}{where} from {from_method} to {to_method}."
            ))
        if report.skipped:
            raise CommandError(f"{len(report.skipped)} process(es) changed during the migration and were skipped; "
                               "run the command again", returncode=1)
