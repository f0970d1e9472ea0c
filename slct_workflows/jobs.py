"""The names RQ jobs are queued under (`slct_workflows.jobs.wake`, ...): a stable contract.

Jobs already in Redis (and scheduled ones, hours ahead) carry these dotted paths, so they stay
here whatever moves behind them; the functions live in `slct_workflows.workers.jobs`.
"""
from slct_workflows.workers.jobs import fire_timers, run_outbox, sweep, wake, wake_timer

__all__ = ["wake", "wake_timer", "fire_timers", "run_outbox", "sweep"]
