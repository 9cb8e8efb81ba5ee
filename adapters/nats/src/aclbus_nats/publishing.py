"""Publishing: core NATS and JetStream publishes, their PubAcks, and core requests.

A JetStream publish is one publish with a reply subject of the connection's reply inbox and
one wait for the PubAck there; publishes are pipelined up to the inbox's window. The PubAck's
error, if any, becomes aclbus' own error for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import nats.errors as nats_errors
import orjson

from aclbus.backend import DeliveryMode, PublishAck, Reply
from aclbus.errors import (
    ACLBusError,
    BackendClosed,
    HeadersTooLarge,
    MessageTooLarge,
    NoResponders,
    NoStream,
    PublishTimeout,
    RequestTimeout,
    StreamFull,
)
from aclbus.wire import encoded_size
from aclbus_nats.connection import NatsConnection
from aclbus_nats.permissions import Interrupted
from aclbus_nats.streams import ProvisionedStreams

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = ["JETSTREAM_MAX_HEADER_BYTES", "Publisher"]

JETSTREAM_MAX_HEADER_BYTES = 65535
"""The largest header block JetStream stores with a message (nats-server keeps its length in
16 bits): one byte more and the PubAck is error 10097, "header size exceeds maximum allowed of
64k", after the round trip. Core NATS has no such limit below ``max_payload``."""
_JS_MSG_SIZE_ERRORS = (10054,)  # JSStreamMessageExceedsMaximumErr
_JS_STORE_ERRORS = (10002, 10023, 10047, 10077)  # account/server/stream storage limits
_JS_IN_PROCESS_CODE = 10158  # JSStreamDuplicateMessageConflict
_JS_IN_PROCESS = b"10158"
_NO_RESPONDERS_PAUSE = 0.1
"""Seconds between publishes to a provisioned stream that JetStream did not answer, or
answered that the same message id is still being stored."""
_STATUS = "Status"
_NO_RESPONDERS_STATUS = "503"

_NOT_SENT = (nats_errors.OutboundBufferLimitError, nats_errors.ConnectionClosedError)
"""nats-py's errors for a message it did not send (caught around each publish: a plain
``try``, as a context manager per message costs more than the rest of the call)."""


def _not_sent(exc: Exception, what: str, subject: str) -> BackendClosed:
    """nats-py's "not sent" error ``exc`` as `BackendClosed` naming the subject."""
    if isinstance(exc, nats_errors.OutboundBufferLimitError):
        return BackendClosed(
            f"the connection to NATS is down and its reconnect buffer is full; the {what} to "
            f"{subject!r} was not sent; send it again once reconnected "
            "(ACLBUS_NATS__RECONNECT_BUFFER sets the buffer's size)"
        )
    return BackendClosed(f"the NATS connection is closed; the {what} to {subject!r} was not sent")


def _in_process(msg: Msg) -> bool:
    """JetStream's "duplicate message id is in process": the same id is being stored."""
    if _JS_IN_PROCESS not in msg.data:
        return False  # the common case, without parsing
    error = orjson.loads(msg.data).get("error") or {}
    return bool(error.get("err_code") == _JS_IN_PROCESS_CODE)


def _no_responders(msg: Msg) -> bool:
    """The server's "no responders" status: nobody subscribes to the request's subject."""
    return (
        not msg.data
        and msg.headers is not None
        and (msg.headers.get(_STATUS) == _NO_RESPONDERS_STATUS)
    )


class Publisher:
    """Publishes and requests on the connection.

    Args:
        connection: The connection.
        streams: The provisioned streams: a publish JetStream did not answer is retried on
            their subjects only, and a refusal for size names their limit.
    """

    def __init__(self, connection: NatsConnection, streams: ProvisionedStreams) -> None:
        self._connection = connection
        self._streams = streams

    async def publish(
        self,
        subject: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE,
        msg_id: str | None = None,
        ttl: float | None = None,
        reply: str | None = None,
    ) -> PublishAck:
        """Publish on core NATS (``at_most_once``) or to JetStream, waiting for its PubAck.

        It raises the errors `NatsBackend.publish` documents.
        """
        nc, inbox = self._connection.replies()
        persistent = mode is not DeliveryMode.AT_MOST_ONCE
        nats_ttl = None
        if persistent and ttl is not None and self._connection.msg_ttl:
            nats_ttl = f"{max(1, int(ttl + 0.999))}s"
        if (persistent and msg_id is not None) or nats_ttl or not isinstance(headers, dict):
            hdrs = dict(headers)  # the caller's headers stay as they were
            if persistent and msg_id is not None:
                hdrs["Nats-Msg-Id"] = msg_id
            if nats_ttl:
                hdrs["Nats-TTL"] = nats_ttl
        else:
            hdrs = headers  # only read, by nats-py's publish
        size = encoded_size(hdrs, body)  # what the server counts: Nats-* headers included
        if size > nc.max_payload:
            raise MessageTooLarge(size, nc.max_payload, "message (the server's max_payload)")
        if persistent and size - len(body) > JETSTREAM_MAX_HEADER_BYTES:
            raise HeadersTooLarge(size - len(body), JETSTREAM_MAX_HEADER_BYTES, subject)
        if not persistent:
            try:
                await nc.publish(subject, body, reply=reply or "", headers=hdrs)
            except _NOT_SENT as exc:
                raise _not_sent(exc, "publish", subject) from None
            policy = self._connection.policy
            if (
                policy is not None
                and not policy.publish.permits(subject)
                and not self._connection.answering(subject)
            ):
                await self._confirm(nc, subject)
            return PublishAck()
        timeout = self._connection.nats_settings.publish_timeout
        # With a message id a publish is sent again while its PubAck is late: one that went to
        # a stream leader as it died is never answered, and waiting for the whole timeout
        # would add up to that much to the failover. The same Nats-Msg-Id is stored once.
        # Not while disconnected: the copy would only wait in the reconnect buffer, and the
        # reconnection sends the publish again anyway (`Interrupted`).
        resend = self._connection.nats_settings.publish_retry_wait if msg_id else timeout
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            attempt = resend if nc.is_connected else left
            try:
                response = await inbox.ask(
                    subject, body, hdrs, max(min(left, attempt), 0.01), retry=msg_id is not None
                )
            except _NOT_SENT as exc:
                raise _not_sent(exc, "publish", subject) from None
            except Interrupted:
                continue  # sent again: the same Nats-Msg-Id is stored once
            except TimeoutError:
                if left <= attempt:
                    raise PublishTimeout(subject, timeout) from None
                continue
            if not _no_responders(response):
                if not _in_process(response):
                    break
                # A resend while the first copy is still being stored: ask again, for the
                # PubAck "duplicate" once it is.
            elif self._streams.of(subject) is None:
                # Nobody stored it: no stream captures the subject, or JetStream is not ready
                # (a server that restarts, a stream leader being elected). A subject of a
                # stream this backend provisioned is tried again until the publish timeout.
                raise NoStream(subject)
            if time.monotonic() + _NO_RESPONDERS_PAUSE >= deadline:
                raise PublishTimeout(subject, timeout)
            await asyncio.sleep(_NO_RESPONDERS_PAUSE)
        ack = orjson.loads(response.data)
        error = ack.get("error")
        if error:
            code = error.get("err_code")
            if code in _JS_MSG_SIZE_ERRORS:
                raise MessageTooLarge(
                    size,
                    self._streams.limit_of(subject) or size - 1,
                    "message (the stream's max_msg_size)",
                )
            if code in _JS_STORE_ERRORS:
                raise StreamFull(subject, f"{error.get('description')} (JetStream code {code})")
            raise ACLBusError(
                f"JetStream refused the publish to {subject!r}: {error.get('description')} "
                f"(code {code})"
            )
        return PublishAck(ack.get("stream"), ack.get("seq"), bool(ack.get("duplicate")))

    async def _confirm(self, nc: Client, subject: str) -> None:
        """Wait for the server's verdict on a core publish the policy's lists do not allow.

        A refused core publish is otherwise only an asynchronous ``-ERR``. Two round trips
        (the first PONG may overtake the ``-ERR``) turn a refusal into `PermissionDenied` at
        once. Only under a policy, and only for such publishes that are not the first reply to
        a request this connection received (`NatsConnection.answering`: the server allows it
        by ``allow_responses``): every other publish costs nothing more.
        """

        async def two_round_trips() -> None:
            await nc.flush()
            await nc.flush()

        await self._connection.permissions.guard("publish", subject, two_round_trips())

    async def request(
        self, subject: str, headers: Mapping[str, str], body: bytes, *, timeout: float
    ) -> Reply:
        """Core NATS request: `NoResponders` at once when nobody listens.

        It raises the errors `NatsBackend.request` documents.
        """
        _, inbox = self._connection.replies()
        hdrs = headers if isinstance(headers, dict) else dict(headers)
        try:
            msg = await inbox.ask(subject, body, hdrs, timeout)
        except _NOT_SENT as exc:
            raise _not_sent(exc, "request", subject) from None
        except TimeoutError:
            raise RequestTimeout(subject, timeout) from None
        if _no_responders(msg):
            raise NoResponders(subject)
        return Reply(msg.subject, msg.headers if msg.headers is not None else {}, msg.data)
