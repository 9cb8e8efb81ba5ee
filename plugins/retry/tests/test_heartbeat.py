"""Heartbeats on a ManualClock: how often they beat, and that they stop and leave nothing behind."""

from __future__ import annotations

import itertools

import pytest

from aclbus import ACLMessage, Performative
from aclbus.backend import DeliveryMode, Received
from aclbus.backends.memory import ManualClock
from aclbus.middleware import Delivery
from aclbus_retry.heartbeat import Heartbeats, timebase_for

pytestmark = pytest.mark.asyncio


class _Beaten(Received):
    """A delivery that records when ``in_progress`` was sent."""

    __slots__ = ("beats", "clock")

    def __init__(self, clock: ManualClock) -> None:
        super().__init__("s", {}, b"", mode=DeliveryMode.AT_LEAST_ONCE)
        self.clock = clock
        self.beats: list[float] = []

    async def _ack(self) -> None:
        return None

    async def _nack(self, delay: float | None) -> None:
        return None

    async def _term(self, reason: str | None) -> None:
        return None

    async def _in_progress(self) -> None:
        self.beats.append(self.clock.now())


def _delivery(clock: ManualClock) -> tuple[Delivery, _Beaten]:
    received = _Beaten(clock)
    msg = ACLMessage(performative=Performative.INFORM, sender_id="a", receiver_id="worker")
    return Delivery(msg, received, "worker"), received


async def test_no_delivery_goes_an_interval_without_a_beat() -> None:
    clock = ManualClock()
    beats = Heartbeats(clock)
    first, first_beats = _delivery(clock)
    second, second_beats = _delivery(clock)
    beats.start(first, 1.0)
    await clock.advance(0.3)
    beats.start(second, 1.0)  # out of phase with the group's timer
    await clock.advance(5.0)
    for started, got in ((0.0, first_beats.beats), (0.3, second_beats.beats)):
        gaps = [b - a for a, b in itertools.pairwise([started, *got])]
        assert len(got) >= 5
        assert all(0.49 <= gap <= 1.0 for gap in gaps), gaps
    beats.stop(first, 1.0)
    beats.stop(second, 1.0)
    count = len(first_beats.beats) + len(second_beats.beats)
    await clock.advance(5.0)
    assert len(first_beats.beats) + len(second_beats.beats) == count
    assert beats.inflight == 0
    assert clock.pending == 0, "an idle group keeps no timer"


async def test_a_short_handler_is_never_beaten() -> None:
    clock = ManualClock()
    beats = Heartbeats(clock)
    delivery, received = _delivery(clock)
    beats.start(delivery, 2.0)
    await clock.advance(0.5)
    beats.stop(delivery, 2.0)
    await clock.advance(10.0)
    assert received.beats == []
    assert clock.pending == 0


async def test_a_settled_delivery_is_not_beaten() -> None:
    clock = ManualClock()
    beats = Heartbeats(clock)
    delivery, received = _delivery(clock)
    beats.start(delivery, 1.0)
    await delivery.ack()
    await clock.advance(3.0)
    assert received.beats == []


async def test_time_comes_from_the_backends_clock_or_the_loop() -> None:
    class WithClock:
        clock = ManualClock(start=42.0)

    assert timebase_for(WithClock()).now() == 42.0  # type: ignore[arg-type]
    loop_time = timebase_for(object()).now()  # type: ignore[arg-type]
    assert loop_time > 0
