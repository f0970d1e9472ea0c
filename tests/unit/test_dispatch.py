"""How wake-ups are cut into RQ jobs (pure arithmetic, no Redis)."""
from __future__ import annotations

from slct_workflows.runtime.dispatch import wake_job_size


def test_wake_jobs_carry_one_goroutine_each_while_few_then_batch():
    assert [wake_job_size(n, 20) for n in (1, 2, 8)] == [1, 1, 1]
    assert wake_job_size(9, 20) == 2 and wake_job_size(40, 20) == 5
    assert wake_job_size(1000, 20) == 20 and wake_job_size(1000, 5) == 5
