"""The parts on their own: a series' decisions, the publish-side numbering, stamps, settings."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import aclbus_ordering
from aclbus import ACLMessage, Bus, ConfigurationError, Performative, Settings
from aclbus.backends.memory import ManualClock
from aclbus_ordering import OrderingSettings, keys, series
from aclbus_ordering.keys import format_stamp, parse_stamp, spec_of, subject_check
from aclbus_ordering.sequencer import Sequencer
from aclbus_ordering.series import Series, SeriesId, Verdict

RUN, HOLD, DUPLICATE, LATE = Verdict.RUN, Verdict.HOLD, Verdict.DUPLICATE, Verdict.LATE
GAP, START = 10.0, 2.0


class FakeReceived:
    def __init__(self) -> None:
        self.settled: str | None = None


def make() -> Series:
    return Series(SeriesId("ledger", "bank", "p.agent.ledger", "routing_key", "a", "e-1"))


def classify(s: Series, seq: int, now: float = 0.0, attempt: int = 1) -> Verdict:
    verdict, _ = s.classify(seq, attempt, now, gap_timeout=GAP, start_timeout=START)
    return verdict


# -- Series ----------------------------------------------------------------------------------


def test_in_order_messages_run_and_repeats_are_duplicates() -> None:
    s = make()
    assert classify(s, 1) is RUN
    s.done(1)
    assert classify(s, 2) is RUN
    s.done(2)
    assert classify(s, 1) is DUPLICATE
    assert classify(s, 2) is DUPLICATE
    assert s.expected == 3


def test_a_message_ahead_is_held_until_the_one_before_is_done() -> None:
    s = make()
    assert classify(s, 1) is RUN
    assert classify(s, 2) is HOLD  # 1 is still running
    s.done(1)
    assert classify(s, 3) is HOLD
    assert classify(s, 2) is RUN
    s.done(2)
    assert classify(s, 3) is RUN


def test_a_gap_is_declared_after_the_timeout_from_the_lowest_held() -> None:
    s = make()
    assert classify(s, 1) is RUN
    s.done(1)
    assert classify(s, 4, now=1.0) is HOLD
    assert classify(s, 3, now=5.0) is HOLD
    verdict, gaps = s.classify(4, 1, 11.0, gap_timeout=GAP, start_timeout=START)
    assert verdict is HOLD  # the gap is 2; 3 is the lowest held and goes first
    [gap] = gaps
    assert (gap.first, gap.last, gap.missing, gap.reason) == (2, 2, 1, "timeout")
    assert gap.waited == pytest.approx(10.0)
    assert (gap.agent, gap.key, gap.sender, gap.series) == ("ledger", "a", "bank", "e-1")
    assert s.expected == 3
    assert classify(s, 3, now=11.5) is RUN
    assert s.take_gap() == gap
    assert s.take_gap() is None
    s.done(3)
    assert classify(s, 4, now=11.6) is RUN
    s.done(4)
    assert classify(s, 2, now=12.0) is LATE  # it was declared missing
    assert classify(s, 3, now=12.0) is DUPLICATE


def test_no_gap_before_the_timeout() -> None:
    s = make()
    classify(s, 1)
    s.done(1)
    for now in (0.0, 3.0, 9.9):
        verdict, gaps = s.classify(3, 1, now, gap_timeout=GAP, start_timeout=START)
        assert (verdict, gaps) == (HOLD, [])


def test_numbers_done_by_unordered_handlers_fill_the_series() -> None:
    s = make()
    assert s.passed(1, 0.0, gap_timeout=GAP) == []
    assert s.expected == 2
    s.passed(3, 0.0, gap_timeout=GAP)
    assert classify(s, 4) is HOLD  # 2 not seen yet
    assert classify(s, 2) is RUN
    s.done(2)
    assert s.expected == 4  # past 3, done already
    assert classify(s, 4) is RUN


def test_a_gap_leaves_out_what_was_done() -> None:
    s = make()
    classify(s, 1)
    s.done(1)
    s.passed(3, 0.0, gap_timeout=GAP)
    assert classify(s, 6, now=0.0) is HOLD
    verdict, [gap] = s.classify(6, 1, 10.0, gap_timeout=GAP, start_timeout=START)
    assert verdict is RUN
    assert (gap.first, gap.last, gap.missing) == (2, 5, 3)  # 2, 4, 5: 3 was done


def test_an_unordered_message_can_declare_the_gap_an_ordered_one_waits_on() -> None:
    s = make()
    classify(s, 1)
    s.done(1)
    assert classify(s, 4, now=0.0) is HOLD
    [gap] = s.passed(5, 10.0, gap_timeout=GAP)
    assert (gap.first, gap.last) == (2, 3)
    assert s.expected == 4


def test_too_many_done_ahead_is_a_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(series, "DONE_AHEAD_LIMIT", 3)
    s = make()
    classify(s, 1)
    s.done(1)
    gaps = [gap for seq in range(3, 8) for gap in s.passed(seq, 0.0, gap_timeout=GAP)]
    [gap] = gaps
    assert (gap.first, gap.last, gap.reason) == (2, 2, "overflow")
    assert s.expected == 8


def test_a_series_seen_mid_way_starts_from_the_lowest_after_start_timeout() -> None:
    s = make()
    assert classify(s, 5, now=0.0) is HOLD
    assert classify(s, 4, now=1.0) is HOLD
    assert classify(s, 5, now=2.5) is HOLD  # started at 4: 5 waits for it
    assert (s.expected, s.resumed) == (4, True)
    assert classify(s, 4, now=2.6) is RUN
    s.done(4)
    assert classify(s, 5, now=2.7) is RUN
    assert classify(s, 2, now=3.0) is LATE  # before the start: never seen here


def test_a_series_seen_from_its_first_number_starts_at_once() -> None:
    s = make()
    assert classify(s, 2) is HOLD
    assert classify(s, 1) is RUN
    assert s.resumed is False


def test_a_failed_message_holds_its_key_until_settled() -> None:
    s = make()
    received = FakeReceived()
    assert classify(s, 1) is RUN
    s.failed(1, 1, received)  # type: ignore[arg-type]
    assert classify(s, 1, attempt=1) is HOLD  # a copy of it, while it is being settled
    assert classify(s, 2) is HOLD
    received.settled = "term"  # given up: dead-lettered
    assert classify(s, 2) is RUN
    assert classify(s, 1) is DUPLICATE


def test_a_failed_message_handed_back_runs_again_first() -> None:
    s = make()
    received = FakeReceived()
    classify(s, 1)
    s.failed(1, 1, received)  # type: ignore[arg-type]
    received.settled = "nack"
    assert classify(s, 2) is HOLD
    assert classify(s, 1, attempt=2) is RUN


def test_a_redelivery_after_a_failure_that_never_settled_runs() -> None:
    s = make()
    classify(s, 1)
    s.failed(1, 1, FakeReceived())  # type: ignore[arg-type]  # e.g. cancelled at shutdown
    assert classify(s, 1, attempt=2) is RUN


def test_retrying_restarts_the_wait() -> None:
    s = make()
    classify(s, 1)
    s.done(1)
    classify(s, 2, now=0.0)
    classify(s, 3, now=0.0)
    s.retrying(2)  # 2 ran and was handed back: not missing
    verdict, gaps = s.classify(3, 1, 10.0, gap_timeout=GAP, start_timeout=START)
    assert (verdict, gaps) == (HOLD, [])


def test_force_declares_everything_before() -> None:
    s = make()
    classify(s, 1)
    s.done(1)
    assert classify(s, 4) is HOLD
    [gap] = s.force(4, 1.0)
    assert (gap.first, gap.last, gap.reason) == (2, 3, "deliveries")
    assert classify(s, 4) is RUN
    unknown = make()
    assert unknown.force(7, 0.0) == []
    assert unknown.expected == 7


def test_deadline_follows_the_wait() -> None:
    s = make()
    assert s.deadline(gap_timeout=GAP, start_timeout=START) is None
    classify(s, 3, now=1.0)
    assert s.deadline(gap_timeout=GAP, start_timeout=START) == 1.0 + START
    classify(s, 1, now=1.5)
    s.done(1)
    classify(s, 3, now=2.0)
    assert s.deadline(gap_timeout=GAP, start_timeout=START) == 2.0 + GAP


async def test_waiting_for_a_change_wakes_on_progress_or_timeout() -> None:
    clock = ManualClock()
    s = make()
    classify(s, 1)
    waiter = asyncio.create_task(s.changed(5.0, clock))
    await clock.advance(0)
    assert not waiter.done()
    s.done(1)
    await clock.advance(0)
    assert waiter.done()
    sleeper = asyncio.create_task(s.changed(5.0, clock))
    await clock.advance(4.9)
    assert not sleeper.done()
    await clock.advance(0.2)
    assert sleeper.done()


# -- Sequencer -------------------------------------------------------------------------------


def _seqs(stamps: dict[str, str]) -> dict[str, int]:
    return {h: int(v.rsplit(".", 1)[1]) for h, v in stamps.items()}


def test_numbers_per_sender_subject_and_key() -> None:
    seq = Sequencer(100, epoch="e")
    rk, conv = "aclbus-order-rk", "aclbus-order-conv"
    assert _seqs(seq.stamp("s", "x", "m1", [(rk, "a"), (conv, "c")])) == {rk: 1, conv: 1}
    assert _seqs(seq.stamp("s", "x", "m2", [(rk, "a")])) == {rk: 2}
    assert _seqs(seq.stamp("s", "x", "m3", [(rk, "b"), (conv, "c")])) == {rk: 1, conv: 2}
    assert _seqs(seq.stamp("s", "y", "m4", [(rk, "a")])) == {rk: 1}  # another subject
    assert _seqs(seq.stamp("t", "x", "m5", [(rk, "a")])) == {rk: 1}  # another sender
    a_on_x = seq.stamp("s", "x", "m6", [(rk, "a")])[rk]
    assert a_on_x.startswith("e-1.")
    assert a_on_x.endswith(".3")
    assert parse_stamp(a_on_x, "x") == keys.Stamp("e-1", 3)


def test_the_same_message_id_gets_the_same_stamps() -> None:
    seq = Sequencer(100)
    first = seq.stamp("s", "x", "m1", [("h", "a")])
    seq.stamp("s", "x", "m2", [("h", "a")])
    assert seq.stamp("s", "x", "m1", [("h", "a")]) == first


def test_unstamp_takes_back_the_last_number_only() -> None:
    seq = Sequencer(100)
    seq.stamp("s", "x", "m1", [("h", "a")])
    seq.unstamp("s", "x", "m1", [("h", "a")])
    assert _seqs(seq.stamp("s", "x", "m2", [("h", "a")])) == {"h": 1}
    seq.stamp("s", "x", "m3", [("h", "a")])
    seq.unstamp("s", "x", "m2", [("h", "a")])  # m3 took a number since: the hole stays
    assert _seqs(seq.stamp("s", "x", "m2", [("h", "a")])) == {"h": 1}  # a retry reuses it
    assert _seqs(seq.stamp("s", "x", "m4", [("h", "a")])) == {"h": 3}


def test_a_forgotten_counter_starts_a_new_series() -> None:
    seq = Sequencer(2, epoch="e")
    first = seq.stamp("s", "x", "m1", [("h", "a")])["h"]
    seq.stamp("s", "x", "m2", [("h", "b")])
    seq.stamp("s", "x", "m3", [("h", "c")])  # evicts a
    assert len(seq) == 2
    again = seq.stamp("s", "x", "m4", [("h", "a")])["h"]
    assert again.endswith(".1")
    assert again.split(".")[0] != first.split(".")[0]


def test_epochs_differ_per_publisher() -> None:
    assert Sequencer(1).epoch != Sequencer(1).epoch


# -- stamps, keys and settings ---------------------------------------------------------------


def test_parse_stamp() -> None:
    check = subject_check("p.agent.a")
    assert parse_stamp(format_stamp("e-1", check, 7), "p.agent.a") == keys.Stamp("e-1", 7)
    assert parse_stamp(format_stamp("e-1", check, 7), "p.agent.b") is None  # copied elsewhere
    for bad in ("", "e-1", f"e-1.{check}", f"e-1.{check}.0", f"e-1.{check}.x", f".{check}.1"):
        assert parse_stamp(bad, "p.agent.a") is None, bad
    assert parse_stamp(f"e-1.{check}.²", "p.agent.a") is None
    assert parse_stamp(f"e-1.{check}.{'9' * 19}", "p.agent.a") is None


def test_ordered_marks_the_handler() -> None:
    async def handler(msg: ACLMessage) -> None: ...

    assert spec_of(handler) is None
    marked = aclbus_ordering.ordered()(handler)
    assert marked is handler
    assert spec_of(handler) == aclbus_ordering.OrderSpec("routing_key")
    msg = ACLMessage(performative="inform", sender_id="s", routing_key="k", correlation_id="c")
    conv = spec_of(aclbus_ordering.ordered("conversation")(handler))
    assert conv is not None
    assert conv.group_of(msg) == "c"
    custom = spec_of(aclbus_ordering.ordered(lambda m: m.sender_id)(handler))
    assert custom is not None
    assert (custom.kind, custom.group_of(msg)) == ("routing_key", "s")
    with pytest.raises(ConfigurationError, match="'routing_key', 'conversation' or a callable"):
        aclbus_ordering.ordered("topic")  # type: ignore[arg-type]


async def test_ordered_on_a_bound_method() -> None:
    class Handlers:
        def __init__(self) -> None:
            self.got: list[Any] = []

        async def handle(self, msg: ACLMessage, delivery: Any) -> None:
            self.got.append((msg, delivery))

    handlers = Handlers()
    marked = aclbus_ordering.ordered()(handlers.handle)
    assert spec_of(marked) is not None
    bus = Bus(Settings(backend="memory"), entry_points=False)
    bus.agent("a").on(Performative.INFORM)(marked)
    [route] = bus.agent("a").routes
    assert route.takes_delivery
    msg = ACLMessage(performative="inform", sender_id="s")
    await marked(msg, "d")
    assert handlers.got == [(msg, "d")]


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACLBUS_ORDERING__GAP_TIMEOUT", "3.5")
    monkeypatch.setenv("ACLBUS_ORDERING__LATE", "handle")
    settings = OrderingSettings()
    assert (settings.gap_timeout, settings.late, settings.max_keys) == (3.5, "handle", 10_000)
    with pytest.raises(ConfigurationError, match="must be shorter than gap_timeout"):
        OrderingSettings(hold_wait=5.0, gap_timeout=1.0)
    with pytest.raises(ConfigurationError):
        OrderingSettings(late="drop")


def test_a_running_message_is_never_declared_missing() -> None:
    s = make()
    assert classify(s, 1) is RUN
    s.run(1)  # a long handler; another group's message of the series waits meanwhile
    assert classify(s, 2, now=0.0) is HOLD
    verdict, gaps = s.classify(2, 1, 60.0, gap_timeout=GAP, start_timeout=START)
    assert (verdict, gaps) == (HOLD, [])
    s.done(1)
    assert classify(s, 2, now=60.0) is RUN
