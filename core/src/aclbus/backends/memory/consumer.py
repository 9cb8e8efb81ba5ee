"""Consumers: what a stream has delivered to whom, and what it must deliver again.

A consumer follows the messages of its stream that match its filter. It hands deliveries to
the workers of the subscriptions attached to it when they ask (`Consumer.take`), in this order:
deliveries already in transit (faults, `InTransit`), redeliveries, then new messages. Every
delivery is `Pending` until it is acked or terminated; its ack deadline sits in the consumer's
`AckDeadlines`, so a delivery costs no timer of its own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aclbus.backend import Received, SubscriptionSpec
from aclbus.backends.memory.advisory import Advise, Advisories
from aclbus.backends.memory.delivery import StreamReceived
from aclbus.backends.memory.pending import AckDeadlines, Pending
from aclbus.backends.memory.transit import InTransit

if TYPE_CHECKING:
    from aclbus.backends.memory.clock import Clock
    from aclbus.backends.memory.faults import FaultInjector
    from aclbus.backends.memory.stream import StoredMessage, Stream

__all__ = ["Consumer", "ConsumerInfo", "StreamReceived"]


@dataclass(frozen=True, slots=True)
class ConsumerInfo:
    """The state of a consumer, as `MemoryBackend.consumer_info` reports it.

    Attributes:
        stream: Its stream.
        name: Its name (the durable name, or a generated one).
        durable: Whether it outlives its subscriptions.
        filter_subject: The subject (pattern) it follows.
        num_pending: Matching messages stored and not yet delivered.
        num_ack_pending: Deliveries sent and not yet acked or terminated (including those
            waiting for a redelivery).
        num_redelivered: Of those, the ones delivered more than once.
        num_waiting: Workers of attached subscriptions waiting for a delivery.
        delivered: Deliveries made so far, redeliveries included.
        redelivered: Deliveries made so far with an attempt above 1.
        acked: Messages acknowledged.
        nacked: Negative acknowledgements received.
        terminated: Messages terminated.
        exhausted: Messages given up after ``max_deliver`` attempts.
        ack_floor: The highest sequence at and below which nothing is pending.
        subscriptions: Subscriptions attached now.
    """

    stream: str
    name: str
    durable: bool
    filter_subject: str
    num_pending: int
    num_ack_pending: int
    num_redelivered: int
    num_waiting: int
    delivered: int
    redelivered: int
    acked: int
    nacked: int
    terminated: int
    exhausted: int
    ack_floor: int
    subscriptions: int


class Consumer:
    """A consumer of a stream (durable or not), shared by the subscriptions bound to it.

    Args:
        stream: Its stream.
        name: Its name.
        spec: The subscription that created it: filter subject, deliver policy and the
            ack settings (``ack_wait``, ``max_deliver``, ``backoff``, ``max_ack_pending``).
        durable: Whether it outlives its subscriptions.
        clock: The engine's clock.
        injector: The engine's fault injector.
        advise: How to publish an advisory.
    """

    def __init__(
        self,
        stream: Stream[Consumer],
        name: str,
        spec: SubscriptionSpec,
        *,
        durable: bool,
        clock: Clock,
        injector: FaultInjector,
        advise: Advise,
    ) -> None:
        self.stream = stream
        self.name = name
        self.filter = spec.subject
        self.durable = durable
        self._clock = clock
        self._injector = injector
        self._advisories = Advisories(advise, clock, stream.name, name)
        self._ack_wait = spec.ack_wait
        self._backoff = spec.backoff
        self._max_deliver = spec.max_deliver
        self._max_ack_pending = spec.max_ack_pending
        now = clock.now()
        self._backlog: deque[int] = (
            stream.seqs_matching(spec.subject, now) if spec.deliver == "all" else deque()
        )
        self._redeliver: deque[int] = deque()
        self._pending: dict[int, Pending] = {}
        self._deadlines = AckDeadlines(
            clock, self._pending, on_due=self._retry, after_due=self._wake
        )
        self._transit = InTransit(clock, injector, storm=self._storm, arrived=self._wake)
        self.waiters: deque[asyncio.Future[Received | None]] = deque()
        self.subscriptions: list[object] = []
        self.deleted = False
        self.delivered = 0
        self.redelivered = 0
        self.acked = 0
        self.nacked = 0
        self.terminated = 0
        self.exhausted = 0

    # -- subscriptions ---------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """Whether several subscriptions compete for this consumer's deliveries."""
        return len(self.subscriptions) > 1

    def attach(self, subscription: object) -> None:
        """Bind a subscription: its workers start asking for deliveries."""
        self.subscriptions.append(subscription)

    def detach(self, subscription: object) -> None:
        """Unbind a subscription; a consumer that is not durable ends with its last one."""
        if subscription in self.subscriptions:
            self.subscriptions.remove(subscription)
        live = [f for f in self.waiters if not f.done()]
        self.waiters.clear()
        self.waiters.extend(live)
        if not self.subscriptions and not self.durable:
            self.delete()

    def delete(self) -> None:
        """Remove the consumer from its stream and stop its timers."""
        self.deleted = True
        self.stream.detach(self)
        self._cancel_timers()

    def _cancel_timers(self) -> None:
        self._deadlines.stop()
        self._transit.stop()

    def suspend(self) -> None:
        """Stop the timers for good: the server that holds the consumer shuts down."""
        self.deleted = True
        self._cancel_timers()

    # -- delivering ------------------------------------------------------------------------

    def notify(self, seq: int) -> None:
        """A new message matching the filter was stored."""
        self._backlog.append(seq)
        if self.waiters:
            self._dispatch()

    def take(self) -> Received | None:
        """The next delivery for a worker, or None if there is none to make now."""
        transit = self._transit
        arrivals = transit.arrivals
        while True:
            if arrivals:
                delivery = arrivals.popleft()
            else:
                fresh = self._next()
                if fresh is None:
                    return None
                if self._injector.active:
                    fresh = transit.inject(fresh)
                    if fresh is None:
                        continue
                delivery = fresh
            if transit.held is not None and transit.held is not delivery:
                # A held delivery goes right after the one that overtook it.
                transit.release_held(first=True)
            return delivery

    def release(self, delivery: Received) -> None:
        """Take back a delivery a worker got but never handed to its handler."""
        seq = delivery.sequence
        p = self._pending.get(seq) if seq is not None else None
        if p is None or p.queued or p.deliveries != delivery.attempt:
            return
        self.delivered -= 1
        if p.deliveries == 1:
            del self._pending[p.seq]
            self._backlog.appendleft(p.seq)
        else:
            self.redelivered -= 1
            p.deliveries -= 1
            p.queued = True
            p.token += 1
            self._redeliver.appendleft(p.seq)
        self._deadlines.prune()
        if self.waiters:
            self._dispatch()

    def _next(self) -> StreamReceived | None:
        now = self._clock.now()
        stream = self.stream
        pending = self._pending
        redeliver = self._redeliver
        while redeliver:
            seq = redeliver.popleft()
            p = pending.get(seq)
            if p is None or not p.queued:
                continue
            p.queued = False
            msg = stream.get(seq, now)
            if msg is None:  # expired or discarded by the limits meanwhile
                del pending[seq]
                continue
            p.deliveries += 1
            self.redelivered += 1
            return self._deliver(p, msg, now)
        if len(pending) >= self._max_ack_pending:
            return None
        backlog = self._backlog
        while backlog:
            seq = backlog.popleft()
            msg = stream.get(seq, now)
            if msg is None:
                continue
            p = pending[seq] = Pending(seq)
            return self._deliver(p, msg, now)
        return None

    def _deliver(self, p: Pending, msg: StoredMessage, now: float) -> StreamReceived:
        self.delivered += 1
        self._deadlines.set(p, now + self._wait(p.deliveries))
        return StreamReceived(
            msg.subject,
            msg.headers,
            msg.body,
            consumer=self,
            attempt=p.deliveries,
            sequence=p.seq,
            stream=self.stream.name,
        )

    def _wait(self, deliveries: int) -> float:
        backoff = self._backoff
        if backoff:
            return backoff[min(deliveries, len(backoff)) - 1]
        return self._ack_wait

    def _dispatch(self) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters[0]
            if waiter.done():  # its worker was stopped or cancelled
                waiters.popleft()
                continue
            delivery = self.take()
            if delivery is None:
                return
            waiters.popleft()
            waiter.set_result(delivery)

    def _wake(self) -> None:
        """Something may be deliverable now: hand it to the workers waiting, if any."""
        if self.waiters:
            self._dispatch()

    # -- redelivery storms (a fault) -------------------------------------------------------

    def _storm(self) -> None:
        now = self._clock.now()
        stream = self.stream
        extra = self._injector.faults.storm_redeliveries
        limit = self._max_deliver
        for p in list(self._pending.values()):
            msg = stream.get(p.seq, now)
            if msg is None:
                continue
            for _ in range(extra):
                if limit is not None and p.deliveries >= limit:
                    break
                p.deliveries += 1
                p.queued = False
                self.redelivered += 1
                self._transit.arrivals.append(self._deliver(p, msg, now))

    # -- settling --------------------------------------------------------------------------

    def ack(self, delivery: Received) -> None:
        """The message of ``delivery`` is done (unless the fault injector loses the ack)."""
        if self.deleted:
            return
        injector = self._injector
        if injector.active and injector.applies(delivery.subject) and injector.drop_ack():
            return
        if self._pending.pop(delivery.sequence or 0, None) is None:
            return
        self.acked += 1
        self._deadlines.prune()
        if self.waiters:
            self._dispatch()

    def nack(self, delivery: Received, delay: float | None) -> None:
        """Deliver the message of ``delivery`` again, after ``delay`` seconds if given."""
        p = self._pending.get(delivery.sequence or 0)
        if self.deleted or p is None or p.queued:
            return
        self.nacked += 1
        if delay:
            # The redelivery waits in the deadline heap like an ack timeout would.
            self._deadlines.set(p, self._clock.now() + delay)
            return
        self._retry(p)
        self._deadlines.prune()
        if self.waiters:
            self._dispatch()

    def term(self, delivery: Received, reason: str | None) -> None:
        """Never deliver the message of ``delivery`` again."""
        if self.deleted:
            return
        p = self._pending.pop(delivery.sequence or 0, None)
        if p is None:
            return
        self.terminated += 1
        self._deadlines.prune()
        self._advisories.terminated(p.seq, p.deliveries, reason or "")
        if self.waiters:
            self._dispatch()

    def progress(self, delivery: Received) -> None:
        """Restart the ack timer of ``delivery``'s message."""
        p = self._pending.get(delivery.sequence or 0)
        if self.deleted or p is None or p.queued:
            return
        self._deadlines.set(p, self._clock.now() + self._wait(p.deliveries))

    def discard(self, seq: int, *, reason: str) -> None:
        """The stream removed message ``seq``: a delivery of it waiting for its ack ends.

        As in JetStream, it counts as terminated, with a ``MSG_TERMINATED`` advisory that
        gives ``reason``; it is not delivered again and a late ack of it is ignored. A message
        not delivered yet needs nothing here: the stream no longer hands it out.
        """
        if self.deleted:
            return
        p = self._pending.pop(seq, None)
        if p is None:
            return
        self.terminated += 1
        self._deadlines.prune()
        self._advisories.terminated(seq, p.deliveries, reason)
        if self.waiters:
            self._dispatch()

    def discard_through(self, last_seq: int) -> None:
        """The stream was purged up to ``last_seq``: forget the deliveries waiting for acks.

        Silently, as JetStream does after a full purge (no advisory, nothing terminated).
        """
        if self.deleted:
            return
        pending = self._pending
        gone = [seq for seq in pending if seq <= last_seq]
        if not gone:
            return
        for seq in gone:
            del pending[seq]
        self._deadlines.prune()
        if self.waiters:
            self._dispatch()

    def _retry(self, p: Pending) -> None:
        """Queue ``p`` for redelivery, or give it up after ``max_deliver`` deliveries."""
        p.token += 1
        if self._max_deliver is not None and p.deliveries >= self._max_deliver:
            del self._pending[p.seq]
            self.exhausted += 1
            self._advisories.max_deliveries(p.seq, p.deliveries)
            return
        p.queued = True
        self._redeliver.append(p.seq)

    # -- inspection ------------------------------------------------------------------------

    def info(self) -> ConsumerInfo:
        """The consumer's state now."""
        now = self._clock.now()
        pending = self._pending
        if pending:
            ack_floor = min(pending) - 1
        elif self._backlog:
            ack_floor = self._backlog[0] - 1
        else:
            ack_floor = self.stream.last_seq
        return ConsumerInfo(
            stream=self.stream.name,
            name=self.name,
            durable=self.durable,
            filter_subject=self.filter,
            num_pending=self.stream.count_live(self._backlog, now),
            num_ack_pending=len(pending),
            num_redelivered=sum(1 for p in pending.values() if p.deliveries > 1),
            num_waiting=sum(1 for f in self.waiters if not f.done()),
            delivered=self.delivered,
            redelivered=self.redelivered,
            acked=self.acked,
            nacked=self.nacked,
            terminated=self.terminated,
            exhausted=self.exhausted,
            ack_floor=ack_floor,
            subscriptions=len(self.subscriptions),
        )
