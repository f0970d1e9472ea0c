"""Unit tests of the pure select/channel rules (slct_workflows/semantics.py), one per rule of
DESIGN 1.2. No database: everything here works on in-memory snapshots."""
from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from slct_workflows import semantics as s
from slct_workflows.semantics import Case, ChannelState, Fire, SelectError, Waiter

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


# -- helpers ------------------------------------------------------------------------------------

def recv(chan: str, target: str = "Main_Got") -> Case:
    return Case(kind=s.RECV, target=target, channel=chan)


def send(chan: str, value, target: str = "Main_Sent") -> Case:
    return Case(kind=s.SEND, target=target, channel=chan, value=value)


def timer(deadline: datetime, target: str = "Main_Late") -> Case:
    return Case(kind=s.TIMER, target=target, deadline=deadline)


def default(target: str = "Main_Default") -> Case:
    return Case(kind=s.DEFAULT, target=target)


def rw(owner, ref=None, target: str = "Main_Got") -> Waiter:
    """A blocked receiver."""
    return Waiter(ref=ref if ref is not None else f"r-{owner}", owner=owner, op="recv", target=target)


def sw(owner, value, ref=None, target: str = "Main_Sent") -> Waiter:
    """A blocked sender offering `value`."""
    return Waiter(ref=ref if ref is not None else f"s-{owner}", owner=owner, op="send", target=target, value=value)


def chans(*states: ChannelState) -> dict[str, ChannelState]:
    return {st.name: st for st in states}


def evaluate(cases, channels, now=NOW, **kw):
    return s.evaluate_select(cases, channels, now, **kw)


# -- ordered evaluation and exclusivity ---------------------------------------------------------

def test_first_ready_case_in_order_wins():
    channels = chans(ChannelState("a", capacity=2, buffer=["from-a"]), ChannelState("b", capacity=2, buffer=["from-b"]))
    d = evaluate([recv("a", "Main_A"), recv("b", "Main_B")], channels)
    assert d.case_index == 0 and d.value == "from-a" and d.pops == ["a"]

    d = evaluate([recv("b", "Main_B"), recv("a", "Main_A")], channels)
    assert d.case_index == 0 and d.value == "from-b" and d.pops == ["b"]


def test_unready_cases_before_the_first_ready_one_are_skipped():
    channels = chans(ChannelState("empty"), ChannelState("full", capacity=1, buffer=["x"]), ChannelState("b", capacity=1, buffer=["y"]))
    d = evaluate([recv("empty"), send("full", 1), recv("b"), recv("empty")], channels)
    assert d.case_index == 2
    assert d.value == "y"
    assert d.pops == ["b"] and d.pushes == [] and d.fires == []


def test_exactly_one_case_fires_even_when_all_are_ready():
    receiver = rw(("g", 7))
    sender = sw(("g", 8), "offered")
    channels = chans(
        ChannelState("out", receivers=[receiver]),
        ChannelState("in", senders=[sender]),
        ChannelState("buf", capacity=1, buffer=["buffered"]),
    )
    d = evaluate([send("out", "v"), recv("in"), recv("buf"), timer(NOW - timedelta(hours=1)), default()], channels)
    assert d.case_index == 0
    assert d.fires == [Fire(receiver, "out", value="v")]
    # the other ready counterparts are untouched: nobody else fired, no buffer edits
    assert d.pops == [] and d.pushes == []
    assert d.value is None and not d.closed


def test_evaluate_select_does_not_mutate_the_snapshot():
    channels = chans(
        ChannelState("c", capacity=1, buffer=["old"], senders=[sw(("g", 1), "next")]),
        ChannelState("u", receivers=[rw(("g", 2))]),
    )
    before = copy.deepcopy(channels)
    evaluate([recv("c")], channels)
    evaluate([send("u", 5)], channels)
    assert channels == before


def test_nothing_ready_and_no_default_blocks():
    channels = chans(ChannelState("u"), ChannelState("full", capacity=1, buffer=[1]))
    d = evaluate([recv("u"), send("u", 1), send("full", 2), timer(NOW + timedelta(seconds=1))], channels)
    assert d.blocked and d.case_index is None
    assert d.fires == [] and d.pops == [] and d.pushes == [] and d.value is None


# -- unbuffered rendezvous ----------------------------------------------------------------------

def test_unbuffered_send_fires_the_oldest_blocked_receiver_with_the_value():
    oldest, younger = rw(("g", 1), ref=10), rw(("g", 2), ref=11)
    d = evaluate([send("u", {"n": 1})], chans(ChannelState("u", receivers=[oldest, younger])))
    assert d.case_index == 0
    assert d.fires == [Fire(oldest, "u", value={"n": 1}, closed=False)]
    assert d.pushes == [] and d.pops == []  # a rendezvous never touches the buffer


def test_unbuffered_recv_takes_from_the_oldest_blocked_sender_and_fires_it():
    oldest, younger = sw(("g", 1), "first"), sw(("x", "key"), "second")
    d = evaluate([recv("u")], chans(ChannelState("u", senders=[oldest, younger])))
    assert d.case_index == 0
    assert d.value == "first" and not d.closed
    assert d.fires == [Fire(oldest, "u")]
    assert d.fires[0].value is None and not d.fires[0].closed
    assert d.pushes == [] and d.pops == []


def test_unbuffered_send_without_receiver_is_not_ready():
    d = evaluate([send("u", 1)], chans(ChannelState("u", senders=[sw(("g", 3), 0)])))
    assert d.blocked


def test_unbuffered_recv_without_sender_is_not_ready():
    d = evaluate([recv("u")], chans(ChannelState("u", receivers=[rw(("g", 3))])))
    assert d.blocked


# -- buffered channels --------------------------------------------------------------------------

def test_buffered_recv_is_fifo():
    d = evaluate([recv("c")], chans(ChannelState("c", capacity=3, buffer=[1, 2, 3])))
    assert d.value == 1 and d.pops == ["c"] and d.pushes == [] and d.fires == []


def test_buffered_send_with_room_appends_to_the_buffer():
    d = evaluate([send("c", 9)], chans(ChannelState("c", capacity=3, buffer=[1, 2])))
    assert d.case_index == 0 and d.pushes == [("c", 9)] and d.pops == [] and d.fires == []


def test_buffered_send_prefers_a_blocked_receiver_over_the_buffer():
    receiver = rw(("g", 1))
    d = evaluate([send("c", 9)], chans(ChannelState("c", capacity=2, receivers=[receiver])))
    assert d.fires == [Fire(receiver, "c", value=9)] and d.pushes == []


def test_buffered_full_send_is_not_ready():
    channels = chans(ChannelState("c", capacity=2, buffer=[1, 2]))
    assert evaluate([send("c", 3)], channels).blocked
    d = evaluate([send("c", 3), default()], channels)
    assert d.case_index == 1 and d.pushes == []


def test_receive_from_a_full_buffer_moves_the_oldest_blocked_senders_value_in_and_fires_it():
    s1, s2 = sw(("g", 1), 3, ref=1), sw(("x", "k"), 4, ref=2)
    d = evaluate([recv("c")], chans(ChannelState("c", capacity=2, buffer=[1, 2], senders=[s1, s2])))
    assert d.case_index == 0
    assert d.value == 1  # the receiver gets the buffer head, not the sender's value
    assert d.pops == ["c"]
    assert d.pushes == [("c", 3)]  # the oldest sender's value goes to the tail
    assert d.fires == [Fire(s1, "c")]  # only the oldest sender fires, not closed


# -- closed channels ----------------------------------------------------------------------------

def test_recv_on_closed_channel_drains_the_buffer_first():
    d = evaluate([recv("c")], chans(ChannelState("c", capacity=2, closed=True, buffer=["left"])))
    assert d.case_index == 0 and d.value == "left" and not d.closed and d.pops == ["c"]


def test_recv_on_closed_empty_channel_gets_none_and_closed():
    d = evaluate([recv("c")], chans(ChannelState("c", capacity=2, closed=True)))
    assert d.case_index == 0 and d.value is None and d.closed is True
    assert d.pops == [] and d.fires == []


def test_closed_recv_is_ready_in_case_order():
    channels = chans(ChannelState("open"), ChannelState("shut", closed=True))
    d = evaluate([recv("open"), recv("shut"), default()], channels)
    assert d.case_index == 1 and d.closed


def test_send_on_closed_channel_fires_with_closed_and_delivers_nothing():
    d = evaluate([send("c", "lost")], chans(ChannelState("c", capacity=5, closed=True)))
    assert d.case_index == 0 and d.closed is True
    assert d.pushes == [] and d.fires == [] and d.value is None


def test_send_on_closed_unbuffered_channel_fires_closed():
    d = evaluate([recv("other"), send("u", 1)], chans(ChannelState("other"), ChannelState("u", closed=True)))
    assert d.case_index == 1 and d.closed is True and d.fires == []


def test_close_fires_every_blocked_receiver_and_sender_with_closed():
    r1, r2 = rw(("g", 1)), rw(("g", 2))
    s1 = sw(("x", "k"), "v")
    d = s.close_channel(ChannelState("c", receivers=[r1, r2], senders=[s1]))
    assert d.blocked  # close is not a select: nothing to hand to a running goroutine
    assert d.fires == [
        Fire(r1, "c", value=None, closed=True),
        Fire(r2, "c", value=None, closed=True),
        Fire(s1, "c", value=None, closed=True),
    ]
    assert d.pops == [] and d.pushes == []  # the buffer is kept for receivers to drain


def test_close_fires_a_select_with_several_cases_on_the_channel_once():
    """Exclusivity: one select blocked with two cases on the closed channel fires one of them,
    its first waiter (receivers before senders, as Go's close; for one op, case order)."""
    g, other = ("g", 1), ("g", 2)
    first, second = rw(g, ref=1, target="Main_First"), rw(g, ref=2, target="Main_Second")
    g_send = sw(g, "v", ref=3, target="Main_Third")
    d = s.close_channel(ChannelState("c", receivers=[first, rw(other), second], senders=[g_send]))
    assert [(f.waiter.owner, f.waiter.target) for f in d.fires] == [(g, "Main_First"), (other, "Main_Got")]
    assert all(f.closed for f in d.fires)

    mixed = sw(g, "v", ref=1, target="Main_Send")
    d = s.close_channel(ChannelState("c", receivers=[rw(g, ref=2, target="Main_Recv")], senders=[mixed]))
    assert [f.waiter.target for f in d.fires] == ["Main_Recv"]


def test_close_of_an_idle_channel_fires_nobody():
    d = s.close_channel(ChannelState("c", capacity=1, buffer=[1]))
    assert d.fires == [] and d.pops == [] and d.pushes == []


def test_double_close_is_a_no_op():
    st = ChannelState("c", closed=True, receivers=[rw(("g", 1))], senders=[sw(("g", 2), 1)])
    d = s.close_channel(st)
    assert d.fires == [] and d.pops == [] and d.pushes == []


# -- timers -------------------------------------------------------------------------------------

def test_due_timer_fires_and_not_due_timer_does_not():
    channels = chans(ChannelState("u"))
    assert evaluate([recv("u"), timer(NOW - timedelta(seconds=1))], channels).case_index == 1
    assert evaluate([recv("u"), timer(NOW)], channels).case_index == 1  # deadline reached = due
    assert evaluate([recv("u"), timer(NOW + timedelta(microseconds=1))], channels).blocked


def test_due_timer_before_a_ready_channel_case_wins():
    channels = chans(ChannelState("c", capacity=1, buffer=[1]))
    d = evaluate([timer(NOW - timedelta(minutes=1)), recv("c")], channels)
    assert d.case_index == 0 and d.pops == [] and d.value is None


def test_not_due_timer_lets_a_later_case_fire():
    channels = chans(ChannelState("c", capacity=1, buffer=[1]))
    d = evaluate([timer(NOW + timedelta(minutes=1)), recv("c")], channels)
    assert d.case_index == 1 and d.value == 1


def test_due_timer_picks_the_first_due_timer_in_case_order():
    cases = [
        recv("c"),
        timer(NOW + timedelta(hours=1)),  # not due
        timer(NOW - timedelta(minutes=1)),  # due, later deadline than the next one
        timer(NOW - timedelta(hours=5)),  # due, earliest deadline
    ]
    assert s.due_timer(cases, NOW) == 2
    assert s.due_timer(cases, NOW - timedelta(hours=2)) == 3
    assert s.due_timer(cases, NOW - timedelta(hours=6)) is None
    assert s.due_timer([recv("c"), send("c", 1)], NOW) is None


# -- default ------------------------------------------------------------------------------------

def test_default_fires_only_when_no_case_before_it_is_ready():
    assert evaluate([recv("u"), default()], chans(ChannelState("u"))).case_index == 1
    d = evaluate([recv("u"), default()], chans(ChannelState("u", senders=[sw(("g", 1), "v")])))
    assert d.case_index == 0 and d.value == "v"


def test_default_alone_fires():
    d = evaluate([default()], {})
    assert d.case_index == 0 and not d.closed and d.fires == []


def test_default_must_be_last():
    with pytest.raises(SelectError, match="last"):
        evaluate([default(), recv("u")], chans(ChannelState("u")))
    with pytest.raises(SelectError):
        s.validate_cases([default(), default()])
    s.validate_cases([recv("u"), default()])  # fine


def test_malformed_cases_are_select_errors():
    with pytest.raises(SelectError):
        s.validate_cases([Case(kind=s.RECV, target="Main_X")])
    with pytest.raises(SelectError):
        s.validate_cases([Case(kind=s.SEND, target="Main_X", value=1)])
    with pytest.raises(SelectError):
        s.validate_cases([Case(kind=s.TIMER, target="Main_X")])


# -- external sends -----------------------------------------------------------------------------

def test_external_send_delivered_to_the_oldest_receiver():
    r1, r2 = rw(("g", 1)), rw(("g", 2))
    st = ChannelState("c", receivers=[r1, r2])
    outcome, d = s.external_send(st, "hello")
    assert outcome == "delivered"
    assert d.fires == [Fire(r1, "c", value="hello")]
    assert d.pushes == []
    assert st.receivers == [r1, r2]  # the snapshot is not consumed


def test_external_send_buffered_when_there_is_room():
    st = ChannelState("c", capacity=2, buffer=[1])
    outcome, d = s.external_send(st, 2)
    assert outcome == "buffered" and d.pushes == [("c", 2)] and d.fires == []
    assert st.buffer == [1]


def test_external_send_on_closed_channel():
    outcome, d = s.external_send(ChannelState("c", capacity=2, closed=True), 1)
    assert outcome == "closed" and d.closed and d.pushes == [] and d.fires == []


@pytest.mark.parametrize("state", [
    ChannelState("c"),  # unbuffered, nobody receiving
    ChannelState("c", senders=[sw(("g", 1), 0)]),  # unbuffered, only other senders
    ChannelState("c", capacity=1, buffer=[1]),  # full
])
def test_external_send_blocked_without_receiver_or_room(state):
    outcome, d = s.external_send(state, 2)
    assert outcome == "blocked"
    assert d.blocked and d.pushes == [] and d.fires == []


# -- owner ----------------------------------------------------------------------------------------

def test_owner_does_not_rendezvous_with_its_own_stale_receiver():
    me, other = ("g", 1), ("g", 2)
    st = ChannelState("u", receivers=[rw(me)])
    # without owner, the stale waiter would be taken as a counterpart
    assert evaluate([send("u", 1)], chans(st)).fires[0].waiter.owner == me
    assert evaluate([send("u", 1)], chans(st), owner=me).blocked
    # with another receiver behind the stale one, that one fires
    st2 = ChannelState("u", receivers=[rw(me), rw(other)])
    d = evaluate([send("u", 1)], chans(st2), owner=me)
    assert [f.waiter.owner for f in d.fires] == [other]


def test_owner_does_not_receive_from_its_own_stale_sender():
    me = ("g", 1)
    channels = chans(ChannelState("u", senders=[sw(me, "mine")]))
    assert evaluate([recv("u")], channels).value == "mine"
    d = evaluate([recv("u"), default()], channels, owner=me)
    assert d.case_index == 1 and d.fires == []
    # a full buffer: the receive takes the head, but does not move the owner's own value in
    full = chans(ChannelState("c", capacity=1, buffer=["head"], senders=[sw(me, "mine")]))
    d = evaluate([recv("c")], full, owner=me)
    assert d.value == "head" and d.pushes == [] and d.fires == []
