"""The connection's reply inbox (`ReplyInbox`): one subscription for every PubAck and reply."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from typing import TYPE_CHECKING

from aclbus.errors import BackendClosed, PermissionDenied
from aclbus_nats.permissions import Interrupted

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

__all__ = ["REPLY_WINDOW", "ReplyInbox"]

REPLY_WINDOW = 4096
"""PubAcks and replies one connection waits for at once; further callers wait for room (the
bounded window of pipelined publishes; nats-py's ``publish_async`` allows 4000)."""


class ReplyInbox:
    """One wildcard inbox subscription for every PubAck and reply the backend waits for.

    nats-py's ``request`` shares one inbox too, but waits with ``wait_for`` (a task and a
    timer per call), and the permission guard wrapped each call in another task. Here a call
    is one future in a dict and one entry in a heap of deadlines: its reply resolves it, one
    timer of the event loop (set for the earliest deadline) fails those whose time is up, and
    the rare events (a permission violation, a reconnection) scan the dict, so no call
    registers for them.

    Args:
        nc: The connection.
        window: How many calls may wait for their reply at once.
    """

    def __init__(self, nc: Client, window: int) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox() + "."
        self._cut = len(self._prefix)
        self._tokens = itertools.count(1)
        # token -> (future, subject, retried after a reconnection)
        self._pending: dict[str, tuple[asyncio.Future[Msg], str, bool]] = {}
        self._room = asyncio.Semaphore(window)
        # (deadline, token) of every call, answered or not: an answered call's entry is
        # dropped when its deadline comes (cheaper than a timer made and cancelled per call)
        self._deadlines: list[tuple[float, str]] = []
        self._keep = 2 * window  # entries beyond this are mostly of answered calls: drop them
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_at = math.inf

    async def start(self) -> None:
        """Subscribe to the inbox (nats-py subscribes again after each reconnection)."""
        await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        waiting = self._pending.get(msg.subject[self._cut :])
        if waiting is not None and not waiting[0].done():
            waiting[0].set_result(msg)

    async def ask(
        self,
        subject: str,
        body: bytes,
        headers: dict[str, str] | None,
        timeout: float,
        *,
        retry: bool = False,
    ) -> Msg:
        """Publish to ``subject`` with a reply subject of this inbox; the one reply.

        Args:
            subject: Where to publish.
            body: The body.
            headers: The headers (not copied, not changed).
            timeout: Seconds to wait for room and for the reply.
            retry: Fail with `Interrupted` at a reconnection, to be sent again.

        Raises:
            TimeoutError: No reply in time.
            Interrupted: ``retry`` and the connection was re-established meanwhile.
            PermissionDenied: The server refused the publish.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._room.locked():
            await asyncio.wait_for(self._room.acquire(), timeout)
        else:
            await self._room.acquire()  # returns at once: no task, no timer
        token = str(next(self._tokens))
        future: asyncio.Future[Msg] = loop.create_future()
        self._pending[token] = (future, subject, retry)
        deadlines = self._deadlines
        if len(deadlines) > self._keep:
            # mostly answered calls: keep those still waiting (at most the window's size)
            deadlines[:] = [entry for entry in deadlines if entry[1] in self._pending]
            heapq.heapify(deadlines)
        heapq.heappush(deadlines, (deadline, token))
        if deadline < self._sweep_at:
            self._sweep_from(loop, deadline)
        try:
            await self._nc.publish(subject, body, reply=self._prefix + token, headers=headers)
            return await future
        finally:
            del self._pending[token]
            self._room.release()

    def _sweep_from(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """Set the one timer for ``when`` (the earliest deadline)."""
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweep_at = when
        self._sweep = loop.call_at(when, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the calls whose deadline has come with `TimeoutError`; set the next timer."""
        self._sweep, self._sweep_at = None, math.inf
        now = loop.time()
        deadlines, pending = self._deadlines, self._pending
        while deadlines and deadlines[0][0] <= now:
            _, token = heapq.heappop(deadlines)
            waiting = pending.get(token)
            if waiting is not None and not waiting[0].done():
                waiting[0].set_exception(TimeoutError())
        if deadlines:
            self._sweep_from(loop, deadlines[0][0])

    def deny(self, op: str, subject: str) -> None:
        """Fail the calls that published to ``subject`` (lower case) with `PermissionDenied`."""
        if op != "publish":
            return
        for future, target, _ in list(self._pending.values()):
            if not future.done() and target.lower() == subject:
                future.set_exception(PermissionDenied("publish", target))

    def interrupt(self) -> None:
        """Fail the calls to send again after a reconnection with `Interrupted`."""
        for future, target, retry in list(self._pending.values()):
            if retry and not future.done():
                future.set_exception(Interrupted(f"publish on {target!r}"))

    def close(self) -> None:
        """Fail every call still waiting: no reply can come any more."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep, self._sweep_at = None, math.inf
        self._deadlines.clear()
        for future, target, _ in list(self._pending.values()):
            if not future.done():
                future.set_exception(
                    BackendClosed(f"the NATS connection closed before {target!r} answered")
                )
