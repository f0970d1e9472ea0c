"""The worker class's stable dotted path (`--worker-class slct_workflows.worker.Worker`, RQ's
WORKER_CLASS setting, deployment units): it lives in `slct_workflows.workers.worker`."""
from slct_workflows.workers.worker import Worker

__all__ = ["Worker"]
