"""Stored messages: read one by sequence or in order, delete one, purge a stream.

What the DLQ, replay and ``aclbus`` tools read back of a stream, through ``STREAM.MSG.GET``
requests to the stream's leader (so what was just published or deleted is seen).
"""

from __future__ import annotations

import base64
from datetime import UTC

import nats.js.errors as js_errors
import orjson
from nats.js import api

from aclbus.backend import StoredMessage
from aclbus.errors import ACLBusError
from aclbus.subjects import check_filter
from aclbus_nats.connection import NatsConnection
from aclbus_nats.headers import read_header_block
from aclbus_nats.stream_api import NoMessage, StreamApi

__all__ = ["StoredMessages", "stored_headers", "stored_message"]


def stored_message(stream: str, raw: api.RawStreamMsg) -> StoredMessage:
    """A message as ``STREAM.MSG.GET`` returns it, as a `StoredMessage`.

    Raises:
        ACLBusError: The answer lacks the sequence, the subject or the time.
    """
    if raw.seq is None or raw.subject is None or raw.time is None:
        raise ACLBusError(f"JetStream returned an incomplete message from stream {stream!r}")
    return StoredMessage(
        stream=stream,
        sequence=raw.seq,
        subject=raw.subject,
        headers=stored_headers(raw.hdrs),
        body=raw.data or b"",
        time=raw.time.astimezone(UTC),
    )


def stored_headers(block: str | bytes | None) -> dict[str, str]:
    """The headers of a stored message, from the API's base64 header block.

    nats-py parses that block with the e-mail parser, which makes a non-ASCII value an
    `email.header.Header` object. It is read here as a delivery's block is
    (`read_header_block`), so a stored message has the headers its deliveries have,
    ``Nats-*`` ones included, and the same defect: what the DLQ and replay read back of a
    message with two ``ce-source`` is refused as the delivery was.
    """
    if not block:
        return {}
    headers = read_header_block(base64.b64decode(block))
    return headers if headers is not None else {}


class StoredMessages:
    """The stored messages of the server's streams.

    Args:
        connection: The connection.
        stream_api: Requests about streams, with their errors mapped.
    """

    def __init__(self, connection: NatsConnection, stream_api: StreamApi) -> None:
        self._connection = connection
        self._api = stream_api

    async def read(
        self, stream: str, *, subject: str | None = None, start: int = 1, limit: int = 100
    ) -> list[StoredMessage]:
        """The stored messages of ``stream`` from sequence ``start`` on, in order.

        Each message is one ``STREAM.MSG.GET`` request for the next one at or after a
        sequence whose subject matches (``next_by_subj``), so deleted sequences and messages
        of other subjects cost nothing.

        Raises:
            ConfigurationError: No such stream; the message names the server's streams.
            InvalidIdentifier: ``subject`` is not a valid subject filter.
            ValueError: ``limit`` is negative.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        _, js = self._connection.require()
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit!r}")
        await self._api.check_name(stream)
        pattern = ">" if subject is None else check_filter(subject)
        found: list[StoredMessage] = []
        seq = max(start, 1)
        while len(found) < limit:
            try:
                raw = await self._api.call(
                    stream, js.get_msg(stream, seq, subject=pattern, next=True)
                )
            except NoMessage:
                break
            message = stored_message(stream, raw)
            found.append(message)
            seq = message.sequence + 1
        return found

    async def get(self, stream: str, sequence: int) -> StoredMessage | None:
        """The message at ``sequence`` in ``stream``; None if deleted, expired or never stored.

        Raises:
            ConfigurationError: No such stream; the message names the server's streams.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        _, js = self._connection.require()
        await self._api.check_name(stream)
        if sequence < 1:  # nats-py would send no sequence at all: just check the stream
            await self._api.call(stream, js.stream_info(stream))
            return None
        try:
            raw = await self._api.call(stream, js.get_msg(stream, sequence))
        except NoMessage:
            return None
        return stored_message(stream, raw)

    async def delete(self, stream: str, sequence: int) -> bool:
        """Remove the message at ``sequence``; False if it was not stored (or had expired).

        Raises:
            ConfigurationError: No such stream; the message names the server's streams.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        _, js = self._connection.require()
        await self._api.check_name(stream)
        if sequence < 1:
            await self._api.call(stream, js.stream_info(stream))
            return False
        try:
            return await self._api.call(stream, js.delete_msg(stream, sequence))
        except NoMessage:
            return False

    async def purge(self, stream: str, *, subject: str | None = None) -> int:
        """Remove every stored message of ``stream`` (whose subject matches ``subject``).

        nats-py's ``purge_stream`` drops the count the server answers with, so this sends the
        same ``$JS.API.STREAM.PURGE.<stream>`` request itself and reads ``purged``.

        Returns:
            How many messages were removed.

        Raises:
            ConfigurationError: No such stream; the message names the server's streams.
            InvalidIdentifier: ``subject`` is not a valid subject filter.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        nc, _ = self._connection.require()
        await self._api.check_name(stream)
        payload = b"{}" if subject is None else orjson.dumps({"filter": check_filter(subject)})
        timeout = self._connection.nats_settings.publish_timeout

        async def purge() -> int:
            msg = await nc.request(
                f"{api.DEFAULT_PREFIX}.STREAM.PURGE.{stream}", payload, timeout=timeout
            )
            answer = orjson.loads(msg.data)
            error = answer.get("error")
            if error:
                js_errors.APIError.from_error(error)  # raises the error class for its code
            return int(answer.get("purged", 0))

        return await self._api.call(stream, purge())
