"""Pre-deploy gate: do the live processes still fit the code? Exit status 1 if not."""
import json

from django.core.management.base import BaseCommand, CommandError

from slct_workflows import deploy


class Command(BaseCommand):
    help = (
        "Check every live process (running or failed) against the registered code: each goroutine's "
        "next method and pending case targets must exist and accept what they will be given, the "
        "definition and version must be registered, state fields must match. Exits with status 1 "
        "and lists the affected processes if anything does not fit (use it as a CI gate)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--definition", action="append", default=[], metavar="NAME",
                            help="only check processes of this definition (repeatable)")
        parser.add_argument("--allow", action="append", default=[], metavar="CODE", choices=deploy.CODES,
                            help="report problems of this kind without failing (repeatable): "
                                 + ", ".join(deploy.CODES))
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, definition=(), allow=(), json=False, **options):
        report = deploy.check(definition or None, allow=allow)
        if json:
            self.stdout.write(_json.dumps(report.as_dict(), indent=2))
        else:
            self._text(report)
        if not report.ok:
            n, m = len(report.failing), len(report.affected())
            raise CommandError(
                f"{n} problem{'s' if n != 1 else ''} in {m} live process{'es' if m != 1 else ''}", returncode=1
            )

    def _text(self, report: deploy.CheckReport) -> None:
        out = self.stdout
        if not report.problems:
            out.write(self.style.SUCCESS(
                f"OK: {report.checked} live process{'es' if report.checked != 1 else ''} fit the code."
            ))
            return
        for pid, problems in report.by_process().items():
            p = problems[0]
            version = f" version {p.version}" if p.version else ""
            out.write(f"{p.definition}{version} {pid} ({p.status}):")
            for problem in problems:
                tag = "allowed" if problem.allowed else problem.code
                line = f"  - [{tag}] {problem.message}"
                out.write(line if problem.allowed else self.style.ERROR(line))
        failing, affected = len(report.failing), len(report.affected())
        summary = (
            f"{report.checked} live process{'es' if report.checked != 1 else ''} checked: "
            f"{failing} problem{'s' if failing != 1 else ''} "
            f"in {affected} process{'es' if affected != 1 else ''}"
        )
        allowed = len(report.problems) - failing
        if allowed:
            summary += f" ({allowed} allowed)"
        out.write(summary + ".")
        if failing:
            out.write(
                "Keep the missing methods, versions and fields until these processes finish, or move "
                "goroutines with `manage.py slct_migrate_status <definition> <from_method> <to_method>`."
            )


_json = json
