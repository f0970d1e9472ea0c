"""Channel rows under many waiters: a step reads only the oldest few per direction
(channels.WAITERS_READ) and must behave exactly as if it had read them all."""
from __future__ import annotations

import pytest

from slct_workflows import services

from slct_workflows.runtime import channels
from slct_workflows.models import BufferedValue, Goroutine, GoroutineStatus, PendingCase

from . import workflows_for_tests  # noqa: F401  (registers the t-* definitions)

pytestmark = pytest.mark.django_db

MANY = channels.WAITERS_READ * 3 + 1


def _senders(runner, chan: str, n: int) -> list[str]:
    return [runner.start("t-sender", {"chan": chan, "value": i}) for i in range(n)]


def test_more_blocked_senders_than_a_step_reads_are_received_in_order(runner):
    services.create_channel("busy", capacity=2)
    senders = _senders(runner, "busy", MANY)
    assert PendingCase.objects.filter(channel_id="busy", kind="send").count() == MANY - 2  # 2 fit the buffer
    receiver = runner.start("t-receiver", {"chan": "busy", "n": MANY})
    runner.assert_finished(receiver, list(range(MANY)))  # Go order: buffer first, then senders oldest first
    for pid in senders:
        runner.assert_finished(pid, "sent")
    assert not BufferedValue.objects.filter(channel_id="busy").exists()


def test_a_receiver_skips_stale_waiters_beyond_the_first_read(runner):
    senders = _senders(runner, "stale", MANY)
    # The oldest senders' goroutines moved on without their pending cases being removed (what a
    # concurrent transaction can look like to a step): every one read first is stale.
    stale = senders[: channels.WAITERS_READ + 2]
    Goroutine.objects.filter(process_id__in=stale).update(wait_seq=999)
    receiver = runner.start("t-receiver", {"chan": "stale", "n": 1})
    runner.assert_finished(receiver, [len(stale)])  # the oldest live sender's value
    runner.assert_finished(senders[len(stale)], "sent")
    assert Goroutine.objects.get(process_id=senders[0]).status == GoroutineStatus.BLOCKED


def test_closing_a_channel_fires_every_waiter_not_only_the_first_read(runner):
    senders = _senders(runner, "doomed", MANY)
    assert services.close_channel("doomed") is True
    runner.run()
    for pid in senders:
        runner.assert_finished(pid, "closed")
    assert not PendingCase.objects.filter(channel_id="doomed").exists()


def test_an_external_send_reaches_the_oldest_of_many_receivers(runner):
    receivers = [runner.start("t-receiver", {"chan": "fanout", "n": 1}) for _ in range(MANY)]
    for i in range(MANY):
        assert services.send("fanout", i, key=f"k{i}").status == "delivered"
    runner.run()
    for i, pid in enumerate(receivers):
        runner.assert_finished(pid, [i])


def test_buffer_positions_stay_in_order_across_an_emptied_buffer(runner):
    services.create_channel("buf", capacity=3)
    for i in range(3):
        services.send("buf", i, key=f"a{i}")
    first = list(BufferedValue.objects.filter(channel_id="buf").order_by("seq").values_list("value", flat=True))
    assert first == [0, 1, 2]
    receiver = runner.start("t-receiver", {"chan": "buf", "n": 4})
    services.send("buf", "late", key="b0")
    runner.run()
    runner.assert_finished(receiver, [0, 1, 2, "late"])
    for i in range(3):
        services.send("buf", f"again{i}", key=f"c{i}")
    assert channels.buffer_values("buf") == ["again0", "again1", "again2"]
