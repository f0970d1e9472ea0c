"""The runtime: the step, channels, timers, a process's lifecycle, hot-path SQL, dispatch.

Its modules are internals: only the services (`slct_workflows.services`), the workers and the
test runner use them. Interfaces (the admin, REST, Slack) and integrations use the services,
the read side (`selectors`, `timeline`), the lifecycle hooks (`slct_workflows.hooks`) and the
helpers below; `tests/test_import_contracts.py` (import-linter) holds them to that.

`FixedValues` is for a hook listener's read, which runs inside the engine's transaction on the
hot path: a `values_list()` queryset compiled once per shape (and prepared on PostgreSQL)
instead of built by the ORM at every call.
"""
from slct_workflows.runtime.db import consistent_read, with_db_retries
from slct_workflows.runtime.fixed_sql import FixedValues

__all__ = ["consistent_read", "with_db_retries", "FixedValues"]
