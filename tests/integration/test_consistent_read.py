"""db.consistent_read: reads inside agree with each other, and the snapshot ends with the block."""
from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from slct_workflows.runtime.db import consistent_read
from slct_workflows.models import Channel


def _in_another_connection(func) -> None:
    """Run `func` on a thread: Django gives it a connection of its own."""
    def run():
        try:
            func()
        finally:
            connections.close_all()

    t = threading.Thread(target=run)
    t.start()
    t.join()


@pytest.mark.django_db(transaction=True)
def test_one_snapshot_inside_and_fresh_reads_after():
    Channel.objects.create(name="snap", capacity=1)
    with consistent_read():
        assert Channel.objects.get(pk="snap").capacity == 1
        _in_another_connection(lambda: Channel.objects.filter(pk="snap").update(capacity=2))
        # Committed meanwhile, but this block keeps reading its snapshot.
        assert Channel.objects.get(pk="snap").capacity == 1
    assert not connection.in_atomic_block
    assert Channel.objects.get(pk="snap").capacity == 2  # the snapshot ended with the block
    _in_another_connection(lambda: Channel.objects.filter(pk="snap").update(capacity=3))
    assert Channel.objects.get(pk="snap").capacity == 3


@pytest.mark.django_db(transaction=True)
def test_an_error_inside_ends_the_snapshot_too():
    Channel.objects.create(name="snap2", capacity=1)
    with pytest.raises(RuntimeError):
        with consistent_read():
            Channel.objects.get(pk="snap2")
            raise RuntimeError("boom")
    _in_another_connection(lambda: Channel.objects.filter(pk="snap2").update(capacity=5))
    assert Channel.objects.get(pk="snap2").capacity == 5
