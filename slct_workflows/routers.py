"""A database router for sites with read replicas: SLCT's tables stay on the primary.

    DATABASE_ROUTERS = ["slct_workflows.routers.PrimaryRouter", "myproject.routers.ReplicaRouter"]

List it first. Every step reads a process, its goroutines and channels and then writes them in
one transaction (docs/LOCKING.md); the API, the admin, the deploy check and the sweep read rows a
step has just committed. A replica lags, so a read there could see a goroutine before its last
step, a channel before its last send, or no process at all right after it was started: exactly-once
would be lost. The router therefore sends reads and writes of the engine's apps (and django_rq's)
to the primary, and has no opinion on any other app (returns None), so the routers after it decide
those.
"""
from __future__ import annotations

from typing import Any

PRIMARY = "default"
PINNED_APPS = frozenset({"slct_workflows", "slack_integration", "django_rq"})


class PrimaryRouter:
    """Pins PINNED_APPS to the `PRIMARY` alias ("default"); None for every other app."""

    primary = PRIMARY
    apps = PINNED_APPS

    def _pinned(self, model: Any) -> bool:
        return model._meta.app_label in self.apps

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return self.primary if self._pinned(model) else None

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return self.primary if self._pinned(model) else None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        # A relation between a pinned row and another app's row (a process's owner, a User) is
        # fine when both live on the primary; routers after this one decide the rest.
        if self._pinned(obj1) or self._pinned(obj2):
            return obj1._state.db == obj2._state.db or None
        return None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        if app_label in self.apps:
            return db == self.primary
        return None
