"""The runtime: the step, channels, timers, a process's lifecycle, hot-path SQL, dispatch.

Its modules are internals: only the services (`slct_workflows.services`), the workers and the
test runner use them. Interfaces (the admin, REST, Slack) and integrations use the services,
the read side (`selectors`, `timeline`), the lifecycle hooks (`slct_workflows.hooks`) and the
two helpers below; `tests/test_import_contracts.py` (import-linter) holds them to that.
"""
from slct_workflows.runtime.db import consistent_read, with_db_retries

__all__ = ["consistent_read", "with_db_retries"]
