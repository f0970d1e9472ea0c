"""`manage.py rqworker` (django-rq) uses the project's worker class unless told otherwise."""
from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django_rq.workers import get_worker_class
from rq.worker import SimpleWorker

from slct_workflows import conf

from slct_workflows.workers.worker import Worker


def test_rqworker_defaults_to_the_non_forking_worker_with_the_timer_loop():
    cls = get_worker_class()
    assert cls is Worker
    assert issubclass(cls, SimpleWorker)  # no fork per job


def test_the_timer_loop_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("SLCT_TIMER_POLL_SECONDS", "0")
    assert conf.timer_poll_seconds() == 0
    monkeypatch.setenv("SLCT_TIMER_POLL_SECONDS", "-1")
    with pytest.raises(ImproperlyConfigured):
        conf.timer_poll_seconds()
