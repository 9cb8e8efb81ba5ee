"""Request-reply on the engine: a fresh inbox per request, the first reply, a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from aclbus.backend import Reply
from aclbus.errors import BackendClosed, NoResponders, RequestTimeout

if TYPE_CHECKING:
    from aclbus.backends.memory.server import MemoryServer

__all__ = ["Requests"]


class Requests:
    """The requests one backend is waiting on, so that closing it can fail them.

    Args:
        server: The server the requests go through.
    """

    def __init__(self, server: MemoryServer) -> None:
        self._server = server
        self._waiting: set[asyncio.Future[Reply]] = set()

    async def send(
        self, subject: str, headers: Mapping[str, str], body: bytes, *, timeout: float
    ) -> Reply:
        """Route a request with a fresh ``_INBOX.*`` reply subject; wait for the first reply.

        Raises:
            NoResponders: No subscription matches ``subject`` (raised at once).
            RequestTimeout: No reply within ``timeout`` seconds of the engine's clock.
            BackendClosed: The backend closed while waiting (`close`).
        """
        server = self._server
        if not server.router.has_interest(subject):
            raise NoResponders(subject)
        inbox = server.new_inbox()
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def expire() -> None:
            if not waiter.done():
                waiter.set_exception(RequestTimeout(subject, timeout))

        server.expect_reply(inbox, waiter, subject)
        self._waiting.add(waiter)
        timer = server.clock.call_later(timeout, expire)
        try:
            server.router.route(subject, MappingProxyType(dict(headers)), body, inbox)
            return await waiter
        finally:
            timer.cancel()
            server.forget_reply(inbox)
            self._waiting.discard(waiter)

    def close(self) -> None:
        """Fail every request still waiting with `BackendClosed`."""
        for waiter in self._waiting:
            if not waiter.done():
                waiter.set_exception(BackendClosed("the memory backend closed during a request"))
