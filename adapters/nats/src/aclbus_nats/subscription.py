"""A subscription on core NATS or a JetStream push consumer, and its deliveries' way in.

nats-py calls `NatsSubscription.on_core_message` or `NatsSubscription.on_js_message` for each
message; the delivery goes to the bus' handler at once, or through a pool of worker tasks when
the subscription asks for concurrency. Unsubscribing lets the running handlers finish and hands
back what no handler will see, for another consumer to get now rather than after ``ack_wait``.

A lazy subscription listens to its stream's announcements (`aclbus_nats.announcements`) and
has its consumer made on the first one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from aclbus.backend import (
    DeliveryHandler,
    DeliveryMode,
    Received,
    Subscription,
    SubscriptionSpec,
)
from aclbus.errors import ACLBusError, BackendClosed
from aclbus_nats.connection import NOT_CONNECTED
from aclbus_nats.headers import NatsHeaders
from aclbus_nats.received import CoreReceived, JetStreamReceived

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NatsPySubscription
    from nats.js import JetStreamContext

__all__ = ["NatsSubscription", "SubscriptionHost"]

log = logging.getLogger("aclbus.nats")

_DRAIN_TIMEOUT = 5.0
"""Seconds an unsubscribe waits for nats-py to hand back what it had queued."""


class SubscriptionHost(Protocol):
    """What a `NatsSubscription` needs of what made it (`aclbus_nats.consuming.Consumers`).

    A protocol, so that this module does not import the one that makes its subscriptions.
    """

    @property
    def nc(self) -> Client | None:
        """The nats-py client while connected, else None."""
        ...

    @property
    def js(self) -> JetStreamContext | None:
        """The client's JetStream context while connected, else None."""
        ...

    def note_request(self, reply: str) -> None:
        """A request with reply subject ``reply`` reached this connection."""
        ...

    @property
    def connected(self) -> bool:
        """True while connected to a server."""
        ...

    async def consume(self, spec: SubscriptionSpec, sub: NatsSubscription) -> Any:
        """Make (or bind) the JetStream push consumer of ``spec``, delivering to ``sub``."""
        ...

    async def holds(self, stream: str, subject: str) -> bool:
        """Whether ``stream`` stores a message on ``subject``."""
        ...

    def forget(self, sub: NatsSubscription) -> None:
        """Drop ``sub``, which has unsubscribed, from the live subscriptions."""
        ...


async def _hand_back(received: Received) -> None:
    """Give a delivery that no handler will see back to JetStream, for another consumer now.

    (A core message cannot be handed back: it is dropped, as ``at_most_once`` allows.)
    """
    if received.mode is DeliveryMode.AT_LEAST_ONCE and received.settled is None:
        with contextlib.suppress(Exception):
            await received.nack()


def _drop_status_frame(subject: str, status: str) -> None:
    log.warning("nats: dropped a NATS status frame (%s) on %s: not a message", status, subject)


class NatsSubscription(Subscription):
    """A subscription on core NATS or a JetStream push consumer.

    Args:
        host: What made it: the connection, the consumer, the live subscriptions.
        spec: What to subscribe to, and how.
        handler: The bus' handler of each delivery.
    """

    def __init__(
        self, host: SubscriptionHost, spec: SubscriptionSpec, handler: DeliveryHandler
    ) -> None:
        self.spec = spec
        self._host = host
        self._handler = handler
        self.nats_sub: NatsPySubscription | Any = None
        self._active = True
        self._queue: asyncio.Queue[Received] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._callers: list[asyncio.Task[Any] | None] = []  # the tasks running a handler now
        self._idle: asyncio.Event | None = None  # set when a handler returns, while unsubscribing
        # While unsubscribing, until the server has the UNSUB: deliveries kept, not handed
        # back (the server would send a handed-back delivery straight back to this very
        # subscription, one more delivery attempt each round, until max_deliver).
        self._held: list[Received] | None = None
        # A lazy subscription: its stream, the announcements it listens to until its
        # consumer is made, and the task that makes it when one comes.
        self._stream: str | None = None
        self._announcements: NatsPySubscription | None = None
        self._binding = asyncio.Lock()
        self._waking: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """False once unsubscribed or once the backend closed."""
        return self._active and self._host.connected

    @property
    def listening(self) -> bool:
        """True while a lazy subscription waits for the first message of its subject."""
        return self._announcements is not None

    async def listen(self, stream: str, announcements: str) -> None:
        """Wait, lazily, for what ``stream`` announces on ``announcements``."""
        nc = self._host.nc
        if nc is None:
            raise BackendClosed(NOT_CONNECTED)
        self._stream = stream
        self._announcements = await nc.subscribe(announcements, cb=self._on_announcement)

    async def bind(self) -> None:
        """Make (or bind) the consumer of a lazy subscription, then stop listening.

        Raises:
            ConsumerLimitReached: The stream has no room for it (it keeps listening).
        """
        async with self._binding:
            if self.nats_sub is not None or not self._active:
                return
            self.nats_sub = await self._host.consume(self.spec, self)
            announcements, self._announcements = self._announcements, None
            if announcements is not None:
                with contextlib.suppress(Exception):
                    await announcements.unsubscribe()

    async def look_again(self) -> None:
        """Bind if the subject has a message now.

        After a reconnection: what was announced while the connection was down was lost.
        """
        if (
            self.listening
            and self._stream is not None
            and self._active
            and await self._host.holds(self._stream, self.spec.subject)
        ):
            await self._wake()

    async def _on_announcement(self, msg: Msg) -> None:
        # nats-py runs this in the announcements' own task, which unsubscribing cancels:
        # bind from a task of its own.
        if self._waking is None or self._waking.done():
            self._waking = asyncio.create_task(self._wake(), name=f"aclbus-lazy-{msg.subject}")

    async def _wake(self) -> None:
        try:
            await self.bind()
        except ACLBusError as exc:
            # Nobody to raise it to: the message waits in the stream, and the next
            # announcement (or reconnection) tries again.
            log.error("nats: lazy subscription to %s: %s", self.spec.subject, exc)

    def start_workers(self) -> None:
        """With concurrency above 1, hand deliveries to a pool of worker tasks."""
        if self.spec.concurrency > 1:
            self._queue = asyncio.Queue(maxsize=self.spec.concurrency * 2)
            self._workers = [
                asyncio.create_task(self._work(), name=f"aclbus-nats-worker-{self.spec.subject}")
                for _ in range(self.spec.concurrency)
            ]

    async def _work(self) -> None:
        assert self._queue is not None
        while self._active:
            received = await self._queue.get()
            if self._active:  # once unsubscribed, queued deliveries are left for redelivery
                await self._call(received)

    async def _call(self, received: Received) -> None:
        caller = asyncio.current_task()
        self._callers.append(caller)
        try:
            await self._handler(received)
        except Exception:  # the bus handles its errors; this guards the subscription itself
            log.exception("nats: delivery handler failed on %s", received.subject)
        finally:
            self._callers.remove(caller)
            if self._idle is not None:
                self._idle.set()

    async def _dispatch(self, received: Received) -> None:
        if not self._active:
            if self._held is not None:
                self._held.append(received)
            else:
                await _hand_back(received)
            return
        if self._queue is not None:
            await self._queue.put(received)
        else:
            await self._call(received)

    async def on_core_message(self, msg: Msg) -> None:
        """nats-py's callback for a core NATS message.

        A status frame (``NATS/1.0 503``: the server's word to a client, or a peer's forgery
        of one) is no message: it is dropped, never handled, dead-lettered or answered.
        """
        headers = msg.headers
        if headers is None:
            headers = {}
        elif headers.__class__ is NatsHeaders and headers.status is not None:
            _drop_status_frame(msg.subject, headers.status)
            return
        if msg.reply:
            self._host.note_request(msg.reply)
        await self._dispatch(CoreReceived(msg.subject, headers, msg.data, msg.reply or None))

    async def on_js_message(self, msg: Msg) -> None:
        """nats-py's callback for a JetStream delivery.

        A stored message whose header block claims a status is terminated unseen (it would
        otherwise come back after every ``ack_wait``). nats-server 2.15 drops such a block
        when it stores the message, so only another server could deliver one.
        """
        nc = self._host.nc
        if nc is None:
            return
        headers = msg.headers if msg.headers is not None else {}
        try:
            received = JetStreamReceived(nc, msg.subject, headers, msg.data, msg.reply)
        except ValueError:
            log.warning("nats: a message on %s without a JetStream ack subject", msg.subject)
            return
        if headers.__class__ is NatsHeaders and headers.status is not None:
            _drop_status_frame(msg.subject, headers.status)
            await received.term(f"a NATS status frame ({headers.status}), not a message")
            return
        await self._dispatch(received)

    async def unsubscribe(self) -> None:
        """Stop delivery; an ephemeral consumer is deleted, a durable one keeps its place."""
        if not self._active:
            return
        self._active = False
        self._held = []
        self._host.forget(self)
        await self._stop_listening()
        # nats-py's unsubscribe cancels the task that runs the handler: let the handlers that
        # run now finish and settle their deliveries first.
        await self._finish_handlers()
        # A worker whose handler unsubscribes ends by itself once the handler returns.
        workers = [task for task in self._workers if task is not asyncio.current_task()]
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # End the subscription before handing anything back: a delivery handed back while it
        # stands is sent straight back to it by the server, to be handed back again, one more
        # delivery attempt each round, until max_deliver dead-letters a good message.
        if self.nats_sub is not None:
            await self._stop_nats_sub()
        held, self._held = self._held or [], None
        for received in held:
            await _hand_back(received)
        while self._queue is not None and not self._queue.empty():
            await _hand_back(self._queue.get_nowait())
        if self.nats_sub is not None and (
            self.spec.mode is DeliveryMode.AT_LEAST_ONCE
            and not (self.spec.durable or self.spec.queue)
        ):
            await self._delete_ephemeral()

    async def _stop_listening(self) -> None:
        announcements, self._announcements = self._announcements, None
        if announcements is not None:
            with contextlib.suppress(Exception):
                await announcements.unsubscribe()
        # A bind under way is let finish (cancelled, it could leave a nats-py subscription
        # nobody stops); what it bound is stopped with the rest of the subscription.
        waking, self._waking = self._waking, None
        if waking is not None and waking is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await waking

    async def _stop_nats_sub(self) -> None:
        """End the nats-py subscription, keeping what was already sent to it.

        A drain (unsubscribe, a round trip, then the messages still queued in nats-py) lets
        `_dispatch` keep each of those, for `unsubscribe` to hand back once the server has the
        UNSUB: an instance that leaves does not hold messages that the others would otherwise
        get only after ``ack_wait``. A handler that
        unsubscribes its own subscription cannot wait for that queue (it is in it), so it just
        unsubscribes.
        """
        sub = self.nats_sub
        me = asyncio.current_task()
        try:
            if me is not None and me in self._callers:
                await sub.unsubscribe()
            else:
                await asyncio.wait_for(sub.drain(), _DRAIN_TIMEOUT)
        except Exception:  # a closed connection, a timeout: nothing more to hand back
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _finish_handlers(self) -> None:
        """Wait for the running handlers to return, for at most ``ack_wait`` seconds.

        A handler that unsubscribes its own subscription is not waited for.
        """
        me = asyncio.current_task()
        own = self._callers.count(me) if me is not None else 0
        deadline = time.monotonic() + self.spec.ack_wait
        while len(self._callers) > own:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning(
                    "nats: %d handler(s) on %s still running after %g s: cancelling them "
                    "(their deliveries are redelivered)",
                    len(self._callers) - own,
                    self.spec.subject,
                    self.spec.ack_wait,
                )
                break
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), left)
        self._idle = None

    async def _delete_ephemeral(self) -> None:
        # An ephemeral consumer would linger for its inactive threshold and keep messages
        # pending for nobody: delete it now.
        js = self._host.js
        # nats-py's push subscription keeps these names only in private attributes (asking
        # the server would cost a request); read defensively, a change there skips the delete.
        stream = getattr(self.nats_sub, "_stream", None)
        consumer = getattr(self.nats_sub, "_consumer", None)
        if js is None or not isinstance(stream, str) or not isinstance(consumer, str):
            return
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, consumer)
