"""A limit on the size of request bodies, enforced before anything parses them."""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LimitBody"]


class LimitBody:
    """ASGI middleware answering 413 to a body over ``limit`` bytes.

    A ``Content-Length`` over the limit is refused before a byte of the body is read; a body
    without one (chunked) is counted as it arrives and refused when it crosses the limit, so
    the application never holds more than ``limit`` bytes of it.

    Args:
        app: The application.
        limit: The largest body, in bytes.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request if its body fits; answer 413 otherwise."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    await self._refuse(send, 400, "BadRequest", "invalid Content-Length")
                    return
                if declared > self.limit:
                    await self._refuse(send, 413, "PayloadTooLarge", self._detail(declared))
                    return
        # Read the body here, up to the limit, and hand it on whole: a chunked body that
        # crosses the limit is refused before the application sees a byte of it.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                await self.app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.limit:
                await self._refuse(send, 413, "PayloadTooLarge", self._detail(received))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)

    def _detail(self, size: int) -> str:
        return (
            f"the request body is over {self.limit} bytes ({size} or more); "
            "the limit is ACLBUS_GATEWAY__MAX_BODY_BYTES"
        )

    @staticmethod
    async def _refuse(send: Send, code: int, error: str, detail: str) -> None:
        body = orjson.dumps({"error": error, "detail": detail})
        await send(
            {
                "type": "http.response.start",
                "status": code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives ``messages`` first, then what ``receive`` gives (a disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
