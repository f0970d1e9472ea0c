"""FixedQuery: a hot-path read compiled once returns exactly what its queryset returns."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from slct_workflows import services
from slct_workflows.fixed_sql import FixedQuery
from slct_workflows.models import Channel, Goroutine

pytestmark = pytest.mark.django_db


def test_results_match_the_queryset_for_scalars_and_lists(runner):
    pids = [runner.start("counter", {"idle_seconds": 60, "channel": f"fx-{i}"}) for i in range(3)]
    by_process = FixedQuery(lambda pid: Goroutine.objects.filter(process_id=pid))
    for pid in pids:
        got = by_process(pid)
        assert [(g.pk, g.name, g.status, g.next_source) for g in got] == [
            (g.pk, g.name, g.status, g.next_source) for g in Goroutine.objects.filter(process_id=pid)
        ]
    channels = FixedQuery(lambda names: Channel.objects.filter(name__in=names).order_by("name"))
    assert [c.name for c in channels(["fx-2", "fx-0"])] == ["fx-0", "fx-2"]
    assert [c.name for c in channels(["fx-1"])] == ["fx-1"]
    assert channels(["nope", "none"]) == []


def test_the_sql_is_built_once_per_shape():
    services.create_channel("fx-a")
    channels = FixedQuery(lambda names: Channel.objects.filter(name__in=names))
    for _ in range(3):
        channels(["fx-a"])
    channels(["fx-a", "fx-b"])
    assert len(channels.compiled) == 2  # one list length each
    with CaptureQueriesContext(connection) as ctx:
        channels(["fx-a"])
    assert len(ctx.captured_queries) == 1


def test_a_builder_with_a_constant_parameter_is_refused():
    # The constant would be frozen into the cached statement's parameters: refused at first use.
    bad = FixedQuery(lambda pid: Goroutine.objects.filter(process_id=pid, status="blocked"))
    with pytest.raises(RuntimeError, match="not only its placeholders"):
        bad("x")
