"""The project's RQ worker class: RQ's non-forking SimpleWorker plus the timer loop.

Non-forking, because a step is a few milliseconds and a fork per job costs more than that (the
bench: ~4x fewer jobs/s); the guarantees do not depend on the fork, since every step is one
transaction and a worker killed mid-step leaves nothing half written. The timer loop (see
`timer_loop`) fires due timers within ~50 ms instead of RQ's whole seconds.
"""
from __future__ import annotations

from typing import Any

from rq.worker import SimpleWorker

from . import conf
from .timer_loop import TimerLoop
from . import metrics  # noqa: F401,E402 - counts the timer loop's sweeps (it registers a sweep listener)


class Worker(SimpleWorker):
    timer_loop: TimerLoop | None = None

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)
        if conf.timer_poll_seconds() > 0 and self.timer_loop is None:
            self.timer_loop = TimerLoop(self.connection, self.name).start()

    def teardown(self) -> None:
        if self.timer_loop is not None:
            self.timer_loop.stop()
            self.timer_loop = None
        super().teardown()
