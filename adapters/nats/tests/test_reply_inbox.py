"""The shared reply inbox: one heap of deadlines and one timer for every waiting call."""

from __future__ import annotations

import asyncio

import nats
import pytest

from aclbus_nats.inbox import ReplyInbox


async def _inbox(url: str, window: int = 64) -> tuple[nats.aio.client.Client, ReplyInbox]:
    """A connection and its inbox; the connection also listens on ``silent``, answering never.

    (With nobody listening, the server would answer at once: "no responders".)
    """
    nc = await nats.connect(url)

    async def never(msg: nats.aio.msg.Msg) -> None:
        return None

    await nc.subscribe("silent", cb=never)
    inbox = ReplyInbox(nc, window)
    await inbox.start()
    await nc.flush()
    return nc, inbox


async def test_a_call_fails_at_its_own_deadline_not_at_an_earlier_calls(nats_url: str) -> None:
    nc, inbox = await _inbox(nats_url)
    try:
        loop = asyncio.get_running_loop()
        slow = asyncio.create_task(inbox.ask("silent", b"", None, 30.0))
        await asyncio.sleep(0.05)
        asked = loop.time()
        with pytest.raises(TimeoutError):
            await inbox.ask("silent", b"", None, 0.2)  # asked later, due sooner
        assert loop.time() - asked < 10  # at its own deadline, not at the earlier call's
        await asyncio.sleep(0)
        assert not slow.done()  # whose deadline has not come
        slow.cancel()
    finally:
        await nc.close()


async def test_answered_calls_never_time_out_and_their_deadlines_are_dropped(
    nats_url: str,
) -> None:
    responder = await nats.connect(nats_url)

    async def echo(msg: nats.aio.msg.Msg) -> None:
        await responder.publish(msg.reply, msg.data)

    await responder.subscribe("echo", cb=echo)
    await responder.flush()
    nc, inbox = await _inbox(nats_url, window=8)
    try:
        replies = [await inbox.ask("echo", str(i).encode(), None, 0.3) for i in range(40)]
        assert [r.data for r in replies] == [str(i).encode() for i in range(40)]
        assert len(inbox._deadlines) <= 2 * 8 + 1  # answered calls' entries do not pile up
        await asyncio.sleep(0.4)  # past every deadline: none of the answered calls fails
        with pytest.raises(TimeoutError):
            await inbox.ask("silent", b"", None, 0.1)  # and the timer still works
    finally:
        await nc.close()
        await responder.close()


async def test_closing_fails_the_waiting_calls_and_stops_the_timer(nats_url: str) -> None:
    from aclbus.errors import BackendClosed

    nc, inbox = await _inbox(nats_url)
    try:
        waiting = asyncio.create_task(inbox.ask("silent", b"", None, 5.0))
        await asyncio.sleep(0.05)
        inbox.close()
        with pytest.raises(BackendClosed):
            await waiting
        assert inbox._sweep is None
        assert not inbox._deadlines
    finally:
        await nc.close()
