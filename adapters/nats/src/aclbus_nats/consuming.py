"""Consuming: core subscriptions, JetStream push consumers, and the lazy ones' first look.

`Consumers.subscribe` makes a `NatsSubscription` and what delivers to it: a core NATS
subscription (``at_most_once``), a JetStream push consumer with manual acks, or, for a lazy
subscription, a subscription to its stream's announcements until the subject has a message.
It keeps the live subscriptions, to stop them on close and to have the lazy ones look again
after a reconnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import nats.js.errors as js_errors
from nats.js import api

from aclbus.backend import ConsumerState, DeliveryHandler, DeliveryMode, SubscriptionSpec
from aclbus.errors import ConfigurationError, ConsumerLimitReached, NoStream, PermissionDenied
from aclbus.permissions import DELIVER_PREFIX
from aclbus_nats.announcements import announcement_subject
from aclbus_nats.connection import NatsConnection
from aclbus_nats.stream_api import StreamApi
from aclbus_nats.streams import ProvisionedStreams
from aclbus_nats.subscription import NatsSubscription

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

__all__ = ["DELIVER_PREFIX", "Consumers"]

log = logging.getLogger("aclbus.nats")

_JS_MAX_CONSUMERS = 10026  # JSMaximumConsumersLimitErr: the stream's or the account's limit
_ALREADY_BOUND = "consumer is already bound to a subscription"  # nats-py's words
_BOUND_RETRIES, _BOUND_PAUSE = 10, 0.1  # about a second for the server to see an UNSUB


class Consumers:
    """The subscriptions of a backend, and the consumers that deliver to them.

    Each `NatsSubscription` made here has this object as its `SubscriptionHost`.

    Args:
        connection: The connection.
        streams: The provisioned streams: their names spare nats-py a lookup, and their
            announcements serve lazy subscriptions.
        stream_api: Requests about streams, with their errors mapped.
    """

    def __init__(
        self, connection: NatsConnection, streams: ProvisionedStreams, stream_api: StreamApi
    ) -> None:
        self._connection = connection
        self._streams = streams
        self._api = stream_api
        self._subscriptions: set[NatsSubscription] = set()
        self._rechecks: set[asyncio.Task[None]] = set()
        connection.on_reconnected(self._look_again_later)

    @property
    def live(self) -> frozenset[NatsSubscription]:
        """The subscriptions made here and not unsubscribed yet."""
        return frozenset(self._subscriptions)

    # -- what a subscription asks of its host ------------------------------------------------

    @property
    def nc(self) -> Client | None:
        """The nats-py client while connected, else None."""
        return self._connection.nc

    @property
    def js(self) -> JetStreamContext | None:
        """The client's JetStream context while connected, else None."""
        return self._connection.js

    @property
    def connected(self) -> bool:
        """True while connected to a server."""
        return self._connection.connected

    async def holds(self, stream: str, subject: str) -> bool:
        """Whether ``stream`` stores a message on ``subject`` (one request to its leader).

        True also when the server forbids this connection to read ``stream``: a policy's
        agent may not read a stream it shares with other agents (``STREAM.MSG.GET``), so its
        lazy subscription makes its consumer at once instead.
        """
        policy = self._connection.policy
        if policy is not None and not policy.publish.permits(
            f"{api.DEFAULT_PREFIX}.STREAM.MSG.GET.{stream}"
        ):
            return True  # not even asked: the server would refuse, and log it
        try:
            return await self._api.holds(stream, subject)
        except PermissionDenied:
            return True

    def note_request(self, reply: str) -> None:
        """A request with reply subject ``reply`` reached this connection (for its policy)."""
        self._connection.note_request(reply)

    def forget(self, sub: NatsSubscription) -> None:
        """Drop ``sub``, which has unsubscribed, from the live subscriptions."""
        self._subscriptions.discard(sub)

    # -- subscribing -------------------------------------------------------------------------

    async def subscribe(self, spec: SubscriptionSpec, handler: DeliveryHandler) -> NatsSubscription:
        """Subscribe on core NATS, or bind a push consumer on JetStream with manual acks.

        It raises the errors `NatsBackend.subscribe` documents.
        """
        nc, _ = self._connection.require()
        permissions = self._connection.permissions
        sub = NatsSubscription(self, spec, handler)
        if spec.mode is DeliveryMode.AT_MOST_ONCE:
            sub.nats_sub = await nc.subscribe(
                spec.subject, queue=spec.queue or "", cb=sub.on_core_message
            )
        elif spec.lazy and (stream := self._streams.announcing(spec)) is not None:
            if spec.deliver != "all":
                # The first message is stored before the consumer exists: "new" skips it.
                raise ConfigurationError(
                    f"subscription to {spec.subject!r}: a lazy subscription delivers what is "
                    "stored: deliver must be 'all'"
                )
            # Listening before looking: the SUB reaches the server before the look, so a
            # message stored after the look is announced to us.
            try:
                await sub.listen(stream, announcement_subject(spec.subject))
                if await self.holds(stream, spec.subject):
                    await sub.bind()
            except BaseException:
                await sub.unsubscribe()
                raise
        else:
            sub.nats_sub = await self.consume(spec, sub)
        sub.start_workers()
        self._subscriptions.add(sub)
        # nats-py writes a flush's PING straight to the socket, ahead of the SUB still in its
        # buffer, so the first PONG may come before the server's -ERR for the SUB; the second
        # round trip comes after it.
        await nc.flush()
        await nc.flush()
        try:
            permissions.check_subscribe(spec.subject)
            if sub.listening:
                permissions.check_subscribe(announcement_subject(spec.subject))
        except PermissionDenied:
            await sub.unsubscribe()  # the client would otherwise keep a dead subscription
            raise
        return sub

    async def consume(self, spec: SubscriptionSpec, sub: NatsSubscription) -> Any:
        """Make (or bind) the JetStream push consumer of ``spec`` for ``sub``.

        Returns:
            nats-py's subscription that delivers to ``sub``.
        """
        _, js = self._connection.require()
        durable = spec.durable or spec.queue
        if spec.queue and spec.durable and spec.queue != spec.durable:
            # JetStream's deliver group is the consumer: one name for both.
            durable = spec.durable
        config = api.ConsumerConfig(
            # With a name, nats-py makes the consumer on
            # $JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>: the server's permissions
            # (`aclbus policy render`) can then hold a connection to its own filters.
            name=durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait,
            max_deliver=spec.max_deliver or -1,
            backoff=list(spec.backoff) or None,
            max_ack_pending=spec.max_ack_pending,
            deliver_policy=(
                api.DeliverPolicy.NEW if spec.deliver == "new" else api.DeliverPolicy.ALL
            ),
        )
        # A stream this backend provisioned spares nats-py the round trip to look it up.
        known = self._streams.covering(spec.subject)
        if durable and spec.queue and known is not None:
            # Instances of an agent may make its consumer in the same instant (a lazy lane,
            # woken in all of them by one announcement): with a deliver subject of each
            # one's own, the second creation would move the consumer to it and leave the
            # first bound to nothing. One subject per consumer makes both creations equal.
            config.deliver_subject = f"{DELIVER_PREFIX}.{known.name}.{durable}"
        try:
            for attempt in range(_BOUND_RETRIES + 1):
                try:
                    # Making the consumer is a request on the JetStream API, which the
                    # server's permissions may forbid: fail at once rather than after the API
                    # timeout.
                    return await self._connection.permissions.guard(
                        "publish",
                        "$JS.API.>",
                        js.subscribe(
                            spec.subject,
                            queue=durable if spec.queue else None,
                            durable=durable,
                            stream=known.name if known is not None else None,
                            cb=sub.on_js_message,
                            manual_ack=True,
                            config=config,
                            pending_msgs_limit=max(spec.max_ack_pending * 2, 1024),
                        ),
                    )
                except js_errors.Error as exc:
                    # The server notes a push consumer's lost interest a little after the
                    # UNSUB (a subscription that just left, an instance that restarts):
                    # until then it reports the consumer bound. A consumer another live
                    # subscription holds stays bound, and fails below after the retries.
                    if _ALREADY_BOUND not in str(exc) or attempt == _BOUND_RETRIES:
                        raise
                await asyncio.sleep(_BOUND_PAUSE)
            raise AssertionError("unreachable: the last attempt returns or raises")
        except PermissionDenied as exc:
            raise PermissionDenied("subscribe", spec.subject) from exc
        except js_errors.NotFoundError:
            raise NoStream(spec.subject) from None
        except js_errors.APIError as exc:
            if exc.err_code == _JS_MAX_CONSUMERS:
                raise await self._consumer_limit(spec.subject) from exc
            raise ConfigurationError(
                f"cannot consume {spec.subject!r} as {durable or 'an ephemeral consumer'}: "
                f"{exc.description} (code {exc.err_code})"
            ) from exc
        except js_errors.Error as exc:
            raise ConfigurationError(
                f"cannot consume {spec.subject!r} as {durable!r}: {exc}"
            ) from exc

    async def states(self) -> list[ConsumerState]:
        """The consumer info of each JetStream consumer of the live subscriptions, once each.

        One CONSUMER.INFO request per consumer; a consumer that cannot be read now (deleted,
        the connection down) is left out rather than failing the whole poll.
        """
        states: dict[tuple[str, str], ConsumerState] = {}
        for sub in list(self.live):
            # A JetStream push subscription (a lazy one still waiting has none yet).
            read: Any = getattr(sub.nats_sub, "consumer_info", None)
            if sub.spec.mode is not DeliveryMode.AT_LEAST_ONCE or read is None:
                continue
            try:
                info = await read()
            except Exception as exc:  # a poll that cannot read it now tries again next time
                log.debug("nats: no consumer info for %s: %s", sub.spec.subject, exc)
                continue
            key = (info.stream_name, info.name)
            if key in states:
                continue
            states[key] = ConsumerState(
                stream=info.stream_name,
                consumer=info.name,
                pending=info.num_pending or 0,
                ack_pending=info.num_ack_pending or 0,
                redelivered=info.num_redelivered or 0,
            )
        return list(states.values())

    async def _consumer_limit(self, subject: str) -> ConsumerLimitReached:
        """The error for a consumer refused with "maximum consumers limit reached".

        The server gives that reason for the stream's limit and the account's alike: the
        stream's count against its limit tells which it was.
        """
        _, js = self._connection.require()
        known = self._streams.covering(subject)
        name = known.name if known is not None else "?"
        with contextlib.suppress(Exception):  # only detail: the error stands without it
            if known is None:
                name = await js.find_stream_name_by_subject(subject)
            info = await js.stream_info(name)
            limit = info.config.max_consumers
            if limit is not None and 0 < limit <= info.state.consumer_count:
                return ConsumerLimitReached(name, limit, subject)
            account = (await js.account_info()).limits.max_consumers
            return ConsumerLimitReached(
                name,
                None,
                subject,
                f"the JetStream account's limit of {account} consumers, or the server's "
                f"default for the stream ({info.state.consumer_count} consumers now)",
            )
        return ConsumerLimitReached(name, None, subject)

    # -- life cycle --------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop every subscription (on close: the connection is still up)."""
        for sub in list(self._subscriptions):
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _look_again_later(self) -> None:
        # What was announced while the connection was down never came: lazy subscriptions
        # look again (nats-py has sent their SUBs again before calling us).
        waiting = [sub for sub in self._subscriptions if sub.listening]
        if waiting:
            task = asyncio.create_task(self._look_again(waiting), name="aclbus-lazy-recheck")
            self._rechecks.add(task)
            task.add_done_callback(self._rechecks.discard)

    async def _look_again(self, waiting: list[NatsSubscription]) -> None:
        for sub in waiting:
            try:
                await sub.look_again()
            except Exception as exc:  # the connection went again: the next reconnection retries
                log.warning("nats: lazy subscription to %s: %s", sub.spec.subject, exc)
