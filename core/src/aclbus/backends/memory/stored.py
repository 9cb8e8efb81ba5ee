"""A server's stored messages as the `Backend` contract shows them, with UTC store times.

The engine stamps a message with `Clock.now` when it stores it; `StoredMessages` hands it out
as an `aclbus.backend.StoredMessage` whose ``time`` is the matching wall-clock time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aclbus.backend import StoredMessage
from aclbus.subjects import check_filter

if TYPE_CHECKING:
    from aclbus.backends.memory.server import MemoryServer
    from aclbus.backends.memory.stream import StoredMessage as EngineMessage

__all__ = ["StoredMessages"]


class StoredMessages:
    """Reading and removing the messages of a server's streams (see `MemoryBackend`).

    Every method raises `ConfigurationError` when there is no such stream (the message names
    the provisioned ones).

    Args:
        server: The server that holds the streams.
    """

    def __init__(self, server: MemoryServer) -> None:
        self._server = server

    def read(self, stream: str, subject: str | None, start: int, limit: int) -> list[StoredMessage]:
        """Up to ``limit`` live messages of ``stream`` from ``start`` on (`Backend.read_stream`).

        Raises:
            ValueError: ``limit`` is negative.
            InvalidIdentifier: ``subject`` is not a valid subject filter.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit!r}")
        owner = self._server.stream(stream)
        if subject is not None:
            check_filter(subject)
        found = owner.read(max(start, 1), subject, limit, self._server.clock.now())
        stored_at = self._stored_at()
        return [
            StoredMessage(owner.name, m.seq, m.subject, m.headers, m.body, stored_at(m))
            for m in found
        ]

    def get(self, stream: str, sequence: int) -> StoredMessage | None:
        """The message at ``sequence``; None if deleted, expired or never stored."""
        owner = self._server.stream(stream)
        msg = owner.get(sequence, self._server.clock.now()) if sequence >= 1 else None
        if msg is None:
            return None
        return StoredMessage(
            owner.name, msg.seq, msg.subject, msg.headers, msg.body, self._stored_at()(msg)
        )

    def delete(self, stream: str, sequence: int) -> bool:
        """Remove the message at ``sequence``; False if it was not stored (or had expired)."""
        owner = self._server.stream(stream)
        return sequence >= 1 and owner.delete(sequence, self._server.clock.now())

    def purge(self, stream: str, subject: str | None) -> int:
        """Remove the live messages (whose subject matches ``subject``); return how many.

        Raises:
            InvalidIdentifier: ``subject`` is not a valid subject filter.
        """
        owner = self._server.stream(stream)
        if subject is not None:
            check_filter(subject)
        return owner.purge(subject, self._server.clock.now())

    def _stored_at(self) -> Callable[[EngineMessage], datetime]:
        """Turn the engine's store times (`Clock.now` readings) into UTC wall-clock times."""
        clock = self._server.clock
        origin = clock.wall() - timedelta(seconds=clock.now())
        return lambda msg: origin + timedelta(seconds=msg.stored)
