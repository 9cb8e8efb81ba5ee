"""A policy's permissions, enforced by one memory connection as nats-server would enforce them.

A `MemoryBackend` joined to a shared `MemoryServer` is one connection with one identity. Given
`Permissions` (`MemoryBackend.enforce`), it refuses at once, with `PermissionDenied` naming
the operation and subject, what nats-server would refuse that connection: each operation is
checked on the subject it has on NATS — a publish on its subject, a consumer on
``$JS.API.CONSUMER.CREATE.<stream>.<consumer>.<filter>`` and its deliver subject, a stored
read on ``$JS.API.STREAM.MSG.GET.<stream>``, a KV bucket (when opened) on
``$JS.API.STREAM.INFO.KV_<bucket>``.

What differs from the server is said in docs/security.md ("Where memory and NATS differ").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from aclbus.backend import DeliveryMode, SubscriptionSpec
from aclbus.errors import PermissionDenied
from aclbus.permissions import JetStreamApi, Permissions
from aclbus.subjects import subject_matches

if TYPE_CHECKING:
    from aclbus.backends.memory.server import MemoryServer
    from aclbus.backends.memory.subscriptions import Subscriptions

__all__ = ["Enforcer"]

_API = JetStreamApi()


class Enforcer:
    """Checks each operation of one memory connection against its `Permissions`.

    Args:
        permissions: What the connection may do.
        server: The server the connection is joined to (its streams, its waiting requests).
        subscriptions: The connection's subscriptions.
    """

    def __init__(
        self, permissions: Permissions, server: MemoryServer, subscriptions: Subscriptions
    ) -> None:
        self.permissions = permissions
        self._server = server
        self._subscriptions = subscriptions

    def _stream_of(self, subject: str) -> str | None:
        stream = self._server.stream_for(subject)
        return None if stream is None else stream.name

    def _subscribed(self) -> Iterator[str]:
        for sub in self._subscriptions.all():
            spec = getattr(sub, "spec", None)  # a lazy one still waiting has its spec too
            if isinstance(spec, SubscriptionSpec):
                yield spec.subject

    def publish(self, subject: str) -> None:
        """A publish (or a request) on ``subject``; a reply is allowed as ``allow_responses``.

        A reply inbox may be answered, beside what the publish rules allow, by a connection
        that subscribes to the subject of the request waiting there: the connection the
        request was delivered to (within ``expires``: the request waits no longer).
        """
        permissions = self.permissions
        if permissions.publish.permits(subject):
            return
        if permissions.responses is not None:
            requested = self._server.request_subject(subject)
            if requested is not None and any(
                subject_matches(s, requested) for s in self._subscribed()
            ):
                return
        raise PermissionDenied("publish", subject)

    def subscribe(self, spec: SubscriptionSpec) -> None:
        """A subscription: core, or a JetStream consumer and its deliver subject.

        A refused consumer is a refused subscription to ``spec.subject``, as on NATS.
        """
        permissions = self.permissions
        if spec.mode is DeliveryMode.AT_MOST_ONCE:
            permissions.check_subscribe(spec.subject)
            return
        stream = self._stream_of(spec.subject)
        if stream is None:
            return  # no stream: the subscription fails with NoStream, as on NATS
        consumer = spec.durable or spec.queue
        try:
            if consumer is None:
                # an ephemeral consumer, made without a name (and so without a filter)
                permissions.check_api(f"{_API.prefix}.CONSUMER.CREATE.{stream}")
                return
            permissions.check_api(_API.consumer_create(stream, consumer, spec.subject))
            permissions.check_subscribe(_API.deliver_subject(stream, consumer))
        except PermissionDenied:
            raise PermissionDenied("subscribe", spec.subject) from None

    def stream(self, action: str, stream: str) -> None:
        """An operation on a stream: ``MSG.GET``, ``MSG.DELETE``, ``PURGE``, ``INFO``..."""
        if action == "MSG.GET":
            self.permissions.check_api(_API.msg_get(stream))
        elif action == "MSG.DELETE":
            self.permissions.check_api(_API.msg_delete(stream))
        else:
            self.permissions.check_api(_API.stream(action, stream))

    def consumer(self, action: str, stream: str, consumer: str) -> None:
        """An operation on a consumer: ``DELETE``, ``INFO``."""
        self.permissions.check_api(_API.consumer(action, stream, consumer))

    def provision(self, stream: str) -> None:
        """Making (or changing) a stream or bucket: ``$JS.API.STREAM.CREATE.<stream>``."""
        self.permissions.check_api(_API.stream("CREATE", stream))

    def kv(self, bucket: str) -> None:
        """Opening a KV bucket: its stream's information (``STREAM.INFO.KV_<bucket>``)."""
        self.permissions.check_api(_API.stream("INFO", f"KV_{bucket}"))
