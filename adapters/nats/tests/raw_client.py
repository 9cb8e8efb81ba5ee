"""A NATS client written by hand, to send what no client library would.

Asyncio streams and the protocol's text frames: a header given twice, a name that is not
UTF-8, a status line, arbitrary bytes in a header block (test_wire_interop, test_hostile_input).
"""

from __future__ import annotations

import asyncio
import time
import uuid

WAIT = 5.0  # seconds any single wait may take


class RawConnection:
    """A NATS client written by hand (asyncio streams and the protocol's text frames), to send
    what no client library would: a header given twice, a name that is not UTF-8, a status
    line (§3)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.messages: list[tuple[str, bytes, bytes]] = []  # (subject, header block, body)

    @classmethod
    async def open(cls, url: str) -> RawConnection:
        host, port = url.removeprefix("nats://").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        await reader.readline()  # INFO
        writer.write(
            b'CONNECT {"verbose":false,"pedantic":false,"headers":true,'
            b'"no_responders":true,"protocol":1}\r\n'
        )
        conn = cls(reader, writer)
        await conn.ping()
        return conn

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()

    async def sub(self, subject: str, sid: int) -> None:
        self._writer.write(f"SUB {subject} {sid}\r\n".encode())
        await self.ping()

    async def hpub(self, subject: str, block: bytes, body: bytes = b"", reply: str = "") -> None:
        head = f"HPUB {subject} {reply} {len(block)} {len(block) + len(body)}\r\n"
        self._writer.write(head.replace("  ", " ").encode() + block + body + b"\r\n")
        await self.ping()

    async def ping(self) -> None:
        """Round trip to the server: what was written before has been processed."""
        self._writer.write(b"PING\r\n")
        await self._writer.drain()
        while await self._frame() != b"PONG":
            pass

    async def wait_message(self, subject: str, timeout: float = WAIT) -> tuple[bytes, bytes]:
        """The next message on ``subject``: (header block, body)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, (got, block, body) in enumerate(self.messages):
                if got == subject:
                    del self.messages[i]
                    return block, body
            await asyncio.wait_for(self._frame(), max(deadline - time.monotonic(), 0.01))

    async def _frame(self) -> bytes:
        line = await self._reader.readline()
        if not line:
            raise ConnectionError("the server closed the raw connection")
        line = line.rstrip(b"\r\n")
        op, *args = line.split(b" ")
        if op == b"PING":
            self._writer.write(b"PONG\r\n")
        elif op == b"MSG":
            data = await self._reader.readexactly(int(args[-1]) + 2)
            self.messages.append((args[0].decode(), b"", data[:-2]))
        elif op == b"HMSG":
            data = await self._reader.readexactly(int(args[-1]) + 2)
            size = int(args[-2])
            self.messages.append((args[0].decode(), data[:size], data[size:-2]))
        elif op == b"-ERR":
            raise AssertionError(line.decode(errors="replace"))
        return op


def raw_block(*lines: bytes) -> bytes:
    """A header block from raw lines: ``NATS/1.0``, the lines, an empty line."""
    return b"NATS/1.0\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


def raw_envelope(ce_type: str = "fipa.acl.inform") -> list[bytes]:
    return [
        b"ce-specversion: 1.0",
        b"ce-id: " + str(uuid.uuid4()).encode(),
        b"ce-type: " + ce_type.encode(),
        b"acl-receiver-id: svc",
    ]


def raw_headers(block: bytes) -> dict[str, list[str]]:
    """Every value of every header of a block, by lower-case name (§3)."""
    out: dict[str, list[str]] = {}
    for line in block.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            out.setdefault(name.decode().lower(), []).append(value.strip().decode())
    return out
