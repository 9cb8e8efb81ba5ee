"""`Ordering`: the middleware that stamps messages on the way out and orders them on the way in.

Publish: a persistent message with a routing key or a conversation id gets a sequence number
per key (see `aclbus_ordering.keys`). Consume: a message for a handler marked `ordered` runs
when its turn comes — one at a time per key, in its sender's order; a message ahead of its
turn waits briefly in the process, then is handed back to the broker with ``nack(delay=...)``
until the one before it has run or is declared missing (a `Gap`). Everything else passes
straight through: a message without a stamp costs two header look-ups.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Final

from aclbus.backend import DeliveryMode, PublishAck
from aclbus.clock import SystemClock, TimerClock
from aclbus.errors import ACLBusError, MessageTooLarge, NoStream, PermissionDenied, StreamFull
from aclbus.middleware import ConsumeNext, Delivery, Middleware, Outgoing, PublishNext
from aclbus_ordering.keys import (
    CONVERSATION,
    HEADER_PREFIX,
    HEADERS,
    ROUTING_KEY,
    KeyKind,
    OrderSpec,
    key_of,
    parse_stamp,
    spec_of,
)
from aclbus_ordering.sequencer import Sequencer
from aclbus_ordering.series import Gap, Series, SeriesId, Verdict
from aclbus_ordering.settings import OrderingSettings

if TYPE_CHECKING:
    from aclbus import Agent, Bus

__all__ = ["LATE_REASON", "GapCallback", "LateMessage", "Ordering", "OrderingStats"]

log = logging.getLogger("aclbus.ordering")

LATE_REASON: Final = "ordering-late"
"""The dead-letter reason of a message that came after its gap was declared."""

REPLAY_HEADER: Final = "aclbus-replay-of"
"""Set on a dead letter replayed: it is a deliberate re-injection, never held back."""

GapCallback = Callable[[Gap], object]
"""Called with each gap; may return an awaitable, which is awaited."""

_ALO = DeliveryMode.AT_LEAST_ONCE
_RK_HEADER = HEADERS[ROUTING_KEY]
_CONV_HEADER = HEADERS[CONVERSATION]
_NOT_STORED = (MessageTooLarge, NoStream, PermissionDenied, StreamFull)
"""Publish errors after which the broker certainly stored nothing."""
_RECENT_GAPS = 100


class LateMessage(ACLBusError):
    """A message of an ordered key arrived after its number had been declared missing."""

    def __init__(self, series: SeriesId, seq: int) -> None:
        self.series = series
        self.seq = seq
        super().__init__(
            f"message {seq} of {series.kind} {series.key!r} from {series.sender!r} arrived "
            "after the key had gone on without it (its gap was declared): not handled out "
            "of order"
        )


@dataclass(slots=True)
class OrderingStats:
    """Counters of one bus' ordering since it started.

    Attributes:
        stamped: Messages published with a sequence number.
        handled: Ordered messages handled in their turn.
        waited: Times a message ahead of its turn waited in the process.
        held: Times one was handed back to the broker (``nack(delay=...)``) to come later.
        duplicates: Deliveries of a message already handled, acked and skipped.
        late: Messages that came after their gap was declared.
        gaps: Gaps declared.
        missing: Messages declared missing, in all gaps.
        superseded: Stale deliveries of a held message left unsettled, a newer one being about.
        forced: Gaps declared early because a held message was on its last delivery.
        resumed: Series first seen past their first number, started from the lowest seen.
        evicted: Series forgotten to stay within ``max_keys``.
    """

    stamped: int = 0
    handled: int = 0
    waited: int = 0
    held: int = 0
    duplicates: int = 0
    late: int = 0
    gaps: int = 0
    missing: int = 0
    superseded: int = 0
    forced: int = 0
    resumed: int = 0
    evicted: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)


class _Lock:
    """A per-key `asyncio.Lock` that removes itself from ``owner`` when nobody uses it."""

    __slots__ = ("key", "lock", "owner", "users")

    def __init__(self, owner: dict[Hashable, _Lock], key: Hashable) -> None:
        self.owner = owner
        self.key = key
        self.lock = asyncio.Lock()
        self.users = 0

    async def __aenter__(self) -> None:
        self.users += 1
        try:
            await self.lock.acquire()
        except BaseException:
            self._leave()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self.lock.release()
        self._leave()

    def _leave(self) -> None:
        self.users -= 1
        if self.users == 0:
            del self.owner[self.key]


class Ordering(Middleware):
    """Stamps outgoing messages and orders incoming ones for `ordered` handlers.

    Args:
        bus: The bus it serves.
        settings: Its settings.
        on_gap: Called with each declared gap (more with `on_gap`).

    Attributes:
        bus: The bus.
        settings: The settings.
        stats: The counters.
        gaps: The last 100 gaps, oldest first.
    """

    def __init__(
        self, bus: Bus, settings: OrderingSettings, on_gap: GapCallback | None = None
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.stats = OrderingStats()
        self.gaps: deque[Gap] = deque(maxlen=_RECENT_GAPS)
        self._callbacks: list[GapCallback] = [on_gap] if on_gap is not None else []
        self._sequencer = Sequencer(settings.max_keys)
        self._series: OrderedDict[tuple[str, ...], Series] = OrderedDict()
        self._locks: dict[Hashable, _Lock] = {}
        self._clock = _clock_of(bus)

    @property
    def epoch(self) -> str:
        """The epoch of the series this bus publishes."""
        return self._sequencer.epoch

    @property
    def tracked(self) -> int:
        """Series whose state this bus keeps (at most ``max_keys``)."""
        return len(self._series)

    def on_gap(self, callback: GapCallback) -> Callable[[], None]:
        """Call ``callback(gap)`` for every gap declared from now on.

        Returns:
            A function that removes the callback.
        """
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, out: Outgoing, call_next: PublishNext) -> PublishAck:
        """Stamp a persistent message with its number per key it carries."""
        msg = out.message
        if msg.headers and any(name.startswith(HEADER_PREFIX) for name in msg.headers):
            # Stamps read from a message this one was copied from belong to that message.
            headers = {k: v for k, v in msg.headers.items() if not k.startswith(HEADER_PREFIX)}
            out.message = msg = msg.model_copy(update={"headers": headers})
        if out.mode is not _ALO:
            return await call_next(out)
        keys = [
            (header, key)
            for header, key in ((_RK_HEADER, msg.routing_key), (_CONV_HEADER, msg.correlation_id))
            if key is not None
        ]
        if not keys:
            return await call_next(out)
        msg_id = out.msg_id or msg.message_id
        out.headers.update(self._sequencer.stamp(msg.sender_id, out.subject, msg_id, keys))
        self.stats.stamped += 1
        try:
            return await call_next(out)
        except _NOT_STORED:
            self._sequencer.unstamp(msg.sender_id, out.subject, msg_id, keys)
            raise

    # -- consuming -------------------------------------------------------------------------

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        """Run a message for an ordered handler in its turn; pass anything else through."""
        received = delivery.received
        headers = received.headers
        rk = headers.get(_RK_HEADER)
        conv = headers.get(_CONV_HEADER)
        if (rk is None and conv is None) or received.mode is not _ALO or REPLAY_HEADER in headers:
            await call_next(delivery)
            return
        agent = self.bus.agents.get(delivery.agent)
        kinds = _ordered_kinds(agent) if agent is not None else ()
        if not kinds:
            await call_next(delivery)
            return
        route = delivery.route
        spec = spec_of(route.func) if route is not None else None
        group = spec.group_of(delivery.message) if spec is not None else None
        now = self._clock.now()
        mine: tuple[Series, int] | None = None
        for kind in kinds:
            stamp_value = rk if kind == ROUTING_KEY else conv
            series_stamp = parse_stamp(stamp_value, received.subject) if stamp_value else None
            key = key_of(delivery.message, kind)
            if series_stamp is None or key is None:
                continue
            series = self._series_of(
                delivery.agent,
                delivery.message.sender_id,
                received.subject,
                kind,
                key,
                series_stamp.series,
            )
            if spec is not None and group is not None and spec.kind == kind:
                mine = (series, series_stamp.seq)
            else:
                gaps = series.passed(series_stamp.seq, now, gap_timeout=self.settings.gap_timeout)
                await self._report(gaps)
        if mine is None or spec is None:
            await call_next(delivery)
            return
        series, seq = mine
        await self._in_turn(
            delivery, call_next, series, seq, _lock_key(delivery.agent, spec, group)
        )

    async def _in_turn(
        self,
        delivery: Delivery,
        call_next: ConsumeNext,
        series: Series,
        seq: int,
        lock_key: Hashable,
    ) -> None:
        """Run ``delivery`` once its turn comes: wait, hand it back, skip or dead-letter it.

        A message ahead of its turn waits ``hold_wait`` in the process, then goes back to the
        broker. One on its last delivery (handed back, the broker would give it up) stays in
        the process instead, telling the broker it is in progress, until its turn comes or
        the key's wait ends in a gap; only past twice ``gap_timeout`` is the gap before it
        declared at once (``forced``).
        """
        settings = self.settings
        clock = self._clock
        received = delivery.received
        last = self._last_delivery(received.attempt)
        patience = 2 * settings.gap_timeout + settings.start_timeout if last else settings.hold_wait
        wait_until = clock.now() + patience
        while True:
            async with self._lock(lock_key):
                now = clock.now()
                verdict, gaps = series.classify(
                    seq,
                    received.attempt,
                    now,
                    gap_timeout=settings.gap_timeout,
                    start_timeout=settings.start_timeout,
                )
                if verdict is Verdict.HOLD and last and now >= wait_until:
                    forced = series.force(seq, now)
                    self.stats.forced += bool(forced)
                    gaps += forced
                    verdict = Verdict.RUN if series.expected == seq else verdict
                if series.resumed:
                    series.resumed = False
                    self.stats.resumed += 1
                    log.info(
                        "agent %s: %s %r from %s resumed at %s (earlier messages were not "
                        "seen by this process)",
                        series.ident.agent,
                        series.ident.kind,
                        series.ident.key,
                        series.ident.sender,
                        series.expected,
                    )
                await self._report(gaps)
                if verdict is Verdict.RUN:
                    await self._run(delivery, call_next, series, seq)
                    return
                if verdict is Verdict.DUPLICATE:
                    self.stats.duplicates += 1
                    await delivery.ack()
                    return
                if verdict is Verdict.LATE:
                    await self._late(delivery, call_next, series, seq)
                    return
            now = clock.now()
            timeout = wait_until - now
            if timeout > 0:
                self.stats.waited += 1
                if last:
                    timeout = min(timeout, self.bus.settings.ack_wait / 3)
                    deadline = series.deadline(
                        gap_timeout=settings.gap_timeout, start_timeout=settings.start_timeout
                    )
                    if deadline is not None and deadline > now:
                        timeout = min(timeout, deadline - now)  # wake to declare the gap
                    await received.in_progress()
                await series.changed(timeout, clock)
                continue
            if last:
                continue  # patience spent: the next round forces its turn
            if series.superseded(seq, received.attempt):
                self.stats.superseded += 1
                return  # a newer delivery of it is about: that one is settled
            self.stats.held += 1
            await delivery.nack(delay=self._hold_delay(series, received.attempt))
            return

    async def _run(
        self, delivery: Delivery, call_next: ConsumeNext, series: Series, seq: int
    ) -> None:
        gap = series.take_gap()
        if gap is not None:
            delivery.state["ordering.gap"] = gap
        series.run(seq)
        try:
            await call_next(delivery)
        except BaseException:
            series.failed(seq, delivery.received.attempt, delivery.received)
            raise
        if delivery.received.settled == "nack":
            series.retrying(seq)
        else:
            series.done(seq)
            self.stats.handled += 1

    async def _late(
        self, delivery: Delivery, call_next: ConsumeNext, series: Series, seq: int
    ) -> None:
        self.stats.late += 1
        error = LateMessage(series.ident, seq)
        if self.settings.late == "handle":
            log.warning("agent %s: %s; handling it anyway", delivery.agent, error)
            delivery.state["ordering.late"] = True
            await call_next(delivery)
            return
        log.warning("agent %s: %s; dead-lettering it", delivery.agent, error)
        await self.bus.give_up(
            delivery.received,
            agent=delivery.agent,
            reason=LATE_REASON,
            error=error,
            handler=delivery.route.func.__qualname__ if delivery.route else None,
        )

    def _last_delivery(self, attempt: int) -> bool:
        """Whether handing a delivery back would make the broker give the message up."""
        max_deliver = self.bus.settings.max_deliver
        return max_deliver is not None and attempt >= max_deliver

    def _hold_delay(self, series: Series, attempt: int) -> float:
        """How long the broker should hold a message back.

        At least ``hold_delay``; longer when needed for the message's remaining deliveries to
        last until the key's wait ends in a gap.
        """
        delay = self.settings.hold_delay
        max_deliver = self.bus.settings.max_deliver
        deadline = series.deadline(
            gap_timeout=self.settings.gap_timeout, start_timeout=self.settings.start_timeout
        )
        if max_deliver is not None and deadline is not None:
            left = max_deliver - attempt
            if left > 0:
                delay = max(delay, (deadline - self._clock.now()) / left)
        return delay

    async def _report(self, gaps: list[Gap]) -> None:
        for gap in gaps:
            self.stats.gaps += 1
            self.stats.missing += gap.missing
            self.gaps.append(gap)
            log.warning(
                "agent %s: gap in %s %r from %s: message(s) %d..%d (%d) missing after %.3g s "
                "(%s); going on without them",
                gap.agent,
                gap.kind,
                gap.key,
                gap.sender,
                gap.first,
                gap.last,
                gap.missing,
                gap.waited,
                gap.reason,
            )
            for callback in list(self._callbacks):
                try:
                    result = callback(gap)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("an ordering gap callback failed")

    # -- state -----------------------------------------------------------------------------

    def _series_of(
        self, agent: str, sender: str, subject: str, kind: KeyKind, key: str, series_id: str
    ) -> Series:
        ident = (agent, sender, subject, kind, key, series_id)
        series = self._series.get(ident)
        if series is not None:
            self._series.move_to_end(ident)
            return series
        series = self._series[ident] = Series(SeriesId(*ident))
        if len(self._series) > self.settings.max_keys:
            self._series.popitem(last=False)
            self.stats.evicted += 1
        return series

    def _lock(self, key: Hashable) -> _Lock:
        """The lock of ``key``: one at a time per key; forgotten when nobody holds or awaits it."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _Lock(self._locks, key)
        return entry


def _clock_of(bus: Bus) -> TimerClock:
    """The backend's clock if it has timers (the memory engine's, manual in tests), else real."""
    clock = bus.backend.clock
    return clock if isinstance(clock, TimerClock) else SystemClock()


def _ordered_kinds(agent: Agent) -> tuple[KeyKind, ...]:
    """The key kinds the ordered handlers of ``agent`` order by (usually none)."""
    kinds: tuple[KeyKind, ...] = ()
    for route in agent.routes:
        spec = spec_of(route.func)
        if spec is not None and spec.kind not in kinds:
            kinds = (*kinds, spec.kind)
    return kinds


def _lock_key(agent: str, spec: OrderSpec, group: str | None) -> Hashable:
    return (agent, spec.kind if spec.group is None else id(spec.group), group)
