"""Streaming: tokens streamed back to a requester, cancelled midway; a 4 MiB upload in chunks.

    python examples/streaming.py

An ``llm`` agent answers a prompt token by token (an async generator handler); the client
reads the tokens with ``async for`` and stops after five, which stops the generator at once.
A ``store`` agent takes a pushed stream of files (`Agent.on_stream`); one is larger than a
message, so it travels in checksummed chunks and is put back together before the handler
sees it. The script checks what it saw and exits non-zero if anything is wrong.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

from aclbus import ACLMessage, Bus, Performative

bus = Bus()
llm = bus.agent("llm")
store = bus.agent("store")
generated: list[str] = []
generator_closed = asyncio.Event()


@llm.on(Performative.REQUEST, message_type="llm.complete")
async def complete(msg: ACLMessage) -> AsyncIterator[dict[str, Any]]:
    """Stream an endless answer, one token at a time, until the requester stops reading."""
    try:
        n = 0
        while True:
            token = f"token{n}"
            generated.append(token)
            yield {"token": token}
            n += 1
            await asyncio.sleep(0)  # a real model would await its next token here
    finally:
        generator_closed.set()  # runs as soon as the requester cancels


@store.on_stream(Performative.INFORM, message_type="files.upload")
async def upload(msg: ACLMessage, chunks: AsyncIterator[Any]) -> ACLMessage:
    """Take files as they come; answer with the size and SHA-256 of each."""
    files = []
    async for data in chunks:
        files.append({"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return msg.reply(Performative.INFORM, payload={"files": files})


def check(ok: bool, what: str) -> None:
    """Exit non-zero if ``ok`` is false: the example checks its own results."""
    if not ok:
        raise SystemExit(f"FAILED: {what}")


async def main() -> None:
    async with bus:
        client = bus.agent("client")  # only sends: never started

        # 1. A streamed reply, cancelled by leaving the loop.
        prompt = client.message(
            Performative.REQUEST,
            receiver_id="llm",
            message_type="llm.complete",
            payload={"prompt": "count for me"},
        )
        tokens = []
        async with bus.request_stream(prompt, window=8) as replies:
            async for reply in replies:
                check(reply.correlation_id == prompt.message_id, "replies join the conversation")
                tokens.append(reply.payload["token"])
                if len(tokens) == 5:
                    break  # leaving the block cancels the stream
        await asyncio.wait_for(generator_closed.wait(), 5.0)
        print(f"read {tokens}; the model made {len(generated)} tokens, then was stopped")
        check(tokens == [f"token{i}" for i in range(5)], "the first five tokens, in order")
        # Flow control: the model never runs more than the window (8) ahead of the reader.
        check(len(generated) <= 5 + 8 + 1, f"the model ran ahead: {len(generated)} tokens")

        # 2. A pushed stream with one item of 4 MiB: chunked, checksummed, reassembled.
        files = [b"hello", os.urandom(4 << 20), b"bye"]
        report = await bus.send_stream(
            client.message(Performative.INFORM, receiver_id="store", message_type="files.upload"),
            files,
            timeout=30.0,
        )
        check(report.reply is not None, "the store answered")
        assert report.reply is not None
        seen = report.reply.payload["files"]
        print(
            f"sent {report.items} files in {report.frames} frames ({report.chunks} chunks); "
            f"the store saw {[f['bytes'] for f in seen]} bytes"
        )
        expected = [{"bytes": len(f), "sha256": hashlib.sha256(f).hexdigest()} for f in files]
        check(seen == expected, "every file arrived whole, with its checksum")
        check(report.chunks > 1, "the 4 MiB file was chunked")


if __name__ == "__main__":
    asyncio.run(main())
