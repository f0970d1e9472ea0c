from django.core.management.base import BaseCommand

from slct_workflows import conf

from slct_workflows.workers import jobs, sweep


class Command(BaseCommand):
    help = (
        "Recovery sweep: re-enqueue runnable goroutines, due timers and pending outbox jobs (idempotent). "
        "The workers run it on their own every SLCT_SWEEP_INTERVAL seconds; this is the on-demand one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--schedule", action="store_true",
                            help="also (re)start the periodic sweep job in RQ (a second path beside the workers' own)")
        parser.add_argument("--grace", type=float, default=None, help="seconds a runnable goroutine may sit idle")

    def handle(self, *args, schedule=False, grace=None, **options):
        import django_rq

        report = sweep.run_sweep(django_rq.get_connection(conf.queue_name()), grace)
        self.stdout.write(
            f"re-enqueued {report.runnable} runnable goroutines, {report.timers} due timers, {report.outbox} outbox jobs"
        )
        if schedule:
            jobs.schedule_sweep()
            self.stdout.write("periodic sweep scheduled")
