"""System checks: a bad Slack setting is reported by `manage.py check` (and at start-up), not
first by the request that reads it."""
from __future__ import annotations

from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured

from . import conf


@register()
def slack_settings(app_configs, **kwargs) -> list[Error]:
    errors = []
    for code, read in (("E001", conf.user_map), ("E002", conf.command_users), ("E003", conf.timeout)):
        try:
            read()
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id=f"slack_integration.{code}"))
    return errors
