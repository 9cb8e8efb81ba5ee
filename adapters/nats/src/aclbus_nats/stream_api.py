"""JetStream API requests about one stream, with the server's refusals as aclbus' errors.

Reading, deleting and purging stored messages, a stream's usage, a lazy subscription's look
for a stored message: each is one request on ``$JS.API``, and each turns the same errors into
the same exceptions (`StreamApi.call`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import TypeVar

import nats.errors as nats_errors
import nats.js.errors as js_errors
from nats.js import api

from aclbus.errors import ACLBusError, BackendClosed, ConfigurationError, RequestTimeout
from aclbus_nats.connection import NatsConnection
from aclbus_nats.streams import ProvisionedStreams

__all__ = ["JS_NO_STREAM", "NoMessage", "StreamApi"]

T = TypeVar("T")

JS_NO_STREAM = 10059  # JSStreamNotFoundErr
_JS_NO_MESSAGE = 10037  # JSNoMessageFoundErr: no message at (or after) that sequence
_JS_NO_SEQUENCE = 10043  # JSSequenceNotFoundErrF: delete of a sequence not stored
_INVALID_STREAM_CHARS = frozenset(">*. /\\\t\r\n")
"""Characters no stream name may hold (nats-py refuses them before asking the server)."""


class NoMessage(Exception):
    """JetStream has no message at the sequence asked for (or none after it)."""


class StreamApi:
    """Requests about streams on the connection's JetStream API.

    Args:
        connection: The connection.
        streams: The provisioned streams, named when a stream is not found and the server
            cannot be asked for its own list.
    """

    def __init__(self, connection: NatsConnection, streams: ProvisionedStreams) -> None:
        self._connection = connection
        self._streams = streams

    async def call(self, stream: str, call: Awaitable[T]) -> T:
        """Await a JetStream API request about ``stream``, with its errors as aclbus' own.

        Raises:
            NoMessage: No message at (or after) the sequence asked for.
            ConfigurationError: No such stream.
            PermissionDenied: The server forbids the JetStream API to this connection.
            RequestTimeout: No answer within ``publish_timeout``.
            BackendClosed: The connection is closed.
            ACLBusError: Any other refusal, with the server's reason.
        """
        try:
            return await self._connection.permissions.guard("publish", "$JS.API.>", call)
        except js_errors.APIError as exc:
            if exc.err_code == JS_NO_STREAM:
                raise await self.unknown_stream(stream) from None
            if exc.err_code in (_JS_NO_MESSAGE, _JS_NO_SEQUENCE):
                raise NoMessage from None
            raise ACLBusError(
                f"JetStream refused a request about stream {stream!r}: {exc.description} "
                f"(code {exc.code}, error code {exc.err_code})"
            ) from exc
        except nats_errors.NoRespondersError:
            raise ACLBusError(
                f"JetStream did not answer a request about stream {stream!r}: is JetStream "
                "enabled and the stream's leader elected?"
            ) from None
        except (nats_errors.TimeoutError, TimeoutError):
            raise RequestTimeout(
                f"{api.DEFAULT_PREFIX}.STREAM.*.{stream}",
                self._connection.nats_settings.publish_timeout,
            ) from None
        except nats_errors.ConnectionClosedError:
            raise BackendClosed(
                f"the NATS connection is closed; the request about stream {stream!r} was not sent"
            ) from None

    async def check_name(self, stream: str) -> None:
        """Raise the unknown-stream error for a name no stream can have.

        nats-py refuses such a name with a bare `ValueError`; the memory backend calls it an
        unknown stream, and so does this one.

        Raises:
            ConfigurationError: ``stream`` cannot be a stream's name.
        """
        if not stream or any(c in _INVALID_STREAM_CHARS for c in stream):
            raise await self.unknown_stream(stream)

    async def unknown_stream(self, stream: str) -> ConfigurationError:
        """The error for a stream that does not exist, naming the ones that do."""
        names = self._streams.names()
        js = self._connection.js
        if js is not None:
            with contextlib.suppress(Exception):  # only a hint: the error stands without it
                infos = await js.streams_info()
                names = sorted(i.config.name for i in infos if i.config.name)
        return ConfigurationError(
            f"no stream {stream!r} on the NATS server (streams: {', '.join(names) or 'none'})"
        )

    async def holds(self, stream: str, subject: str) -> bool:
        """Whether ``stream`` stores a message on ``subject`` (one request to its leader).

        Raises:
            BackendClosed: Not connected.
        """
        _, js = self._connection.require()
        try:
            await self.call(stream, js.get_msg(stream, 1, subject=subject, next=True))
        except NoMessage:
            return False
        return True
