"""Request-reply on the backend: a reply, a timeout, and a fast "no responders"."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from aclbus.backend import Backend, Capabilities, Received, SubscriptionSpec
from aclbus.errors import NoResponders, RequestTimeout
from aclbus.testing.cases.base import AMO, BackendTestcase, reply_to
from aclbus.testing.collector import DEFAULT_TIMEOUT, Deliveries

__all__ = ["RequestReplyTestcase"]


class RequestReplyTestcase(BackendTestcase):
    """`Backend.request`: the responder publishes its answer to the delivery's ``reply``."""

    requires: ClassVar[Capabilities] = Capabilities(request_reply=True)

    async def _serve(self, backend: Backend, subject: str) -> None:
        async def echo(received: Received) -> None:
            await reply_to(backend, received, b"re:" + received.body)

        await backend.subscribe(SubscriptionSpec(subject, mode=AMO), echo)

    async def test_request_gets_the_reply(self, backend: Backend) -> None:
        """The first reply comes back with its headers and body."""
        subject = self.core_subject("echo")
        await self._serve(backend, subject)
        reply = await asyncio.wait_for(
            backend.request(subject, {"x-q": "1"}, b"ping", timeout=DEFAULT_TIMEOUT),
            DEFAULT_TIMEOUT,
        )
        assert reply.body == b"re:ping"
        assert reply.headers["answered-by"] == "kit"

    async def test_request_carries_headers_and_reply_subject(self, backend: Backend) -> None:
        """The responder sees the request's headers, body and a reply subject."""
        subject = self.core_subject("seen")
        seen = Deliveries(settle=None)

        async def responder(received: Received) -> None:
            await seen(received)
            await reply_to(backend, received, b"ok")

        await backend.subscribe(SubscriptionSpec(subject, mode=AMO), responder)
        await asyncio.wait_for(
            backend.request(subject, {"x-q": "1"}, b"ping", timeout=DEFAULT_TIMEOUT),
            DEFAULT_TIMEOUT,
        )
        [received] = seen.items
        assert received.headers["x-q"] == "1"
        assert received.body == b"ping"
        assert received.reply

    async def test_concurrent_requests_get_their_own_replies(self, backend: Backend) -> None:
        """Requests in flight together each get the reply to themselves."""
        subject = self.core_subject("many")
        await self._serve(backend, subject)
        bodies = [str(i).encode() for i in range(20)]
        replies = await asyncio.wait_for(
            asyncio.gather(
                *(backend.request(subject, {}, b, timeout=DEFAULT_TIMEOUT) for b in bodies)
            ),
            DEFAULT_TIMEOUT,
        )
        assert [r.body for r in replies] == [b"re:" + b for b in bodies]

    async def test_request_times_out(self, backend: Backend) -> None:
        """A responder that never answers: `RequestTimeout` after the timeout, not before."""
        subject = self.core_subject("silent")
        listener = Deliveries(settle=None)
        await backend.subscribe(SubscriptionSpec(subject, mode=AMO), listener)
        request = asyncio.ensure_future(backend.request(subject, {}, b"ping", timeout=2.0))
        try:
            await listener.wait_for(1)
            await self.advance(1.0)
            assert not request.done(), "the request ended before its timeout"
            await self.advance(1.5)
            with pytest.raises(RequestTimeout) as caught:
                await asyncio.wait_for(request, DEFAULT_TIMEOUT)
        finally:
            request.cancel()
        assert caught.value.subject == subject
        assert caught.value.timeout == 2.0

    async def test_no_responders_fails_fast(self, backend: Backend) -> None:
        """Nobody listens: `NoResponders` at once, far within the request's timeout."""
        subject = self.core_subject("nobody")
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(NoResponders) as caught:
            await asyncio.wait_for(
                backend.request(subject, {}, b"ping", timeout=60.0), DEFAULT_TIMEOUT
            )
        assert loop.time() - started < DEFAULT_TIMEOUT
        assert caught.value.subject == subject

    async def test_no_responders_after_unsubscribe(self, backend: Backend) -> None:
        """A responder that left: the next request fails fast with `NoResponders`."""
        subject = self.core_subject("left")
        sub = await backend.subscribe(SubscriptionSpec(subject, mode=AMO), Deliveries())
        await sub.unsubscribe()
        with pytest.raises(NoResponders):
            await asyncio.wait_for(
                backend.request(subject, {}, b"ping", timeout=60.0), DEFAULT_TIMEOUT
            )
