"""The bases of every testcase: `BackendTestcase` (the Backend contract) and `BusTestcase`."""

from __future__ import annotations

from typing import ClassVar

import pytest

from aclbus.backend import Backend, Capabilities, DeliveryMode, PublishAck, Received
from aclbus.testing.config import BackendConfig

__all__ = ["AMO", "ALO", "BackendTestcase", "BusTestcase", "publish_numbered", "reply_to"]

AMO = DeliveryMode.AT_MOST_ONCE
ALO = DeliveryMode.AT_LEAST_ONCE


class BackendTestcase(BackendConfig):
    """Base of the testcases that exercise a `Backend` directly, through the ``backend`` fixture.

    A testcase is abstract: its name has no ``Test`` prefix, so pytest collects it only when
    mixed with a config, ``class TestX(MyConfig, XTestcase): pass``.

    Attributes:
        requires: The capabilities every test of the testcase needs; on a backend lacking
            one, the tests are skipped with the reason ``backend 'x' lacks capability: y``.
    """

    requires: ClassVar[Capabilities] = Capabilities()
    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.asyncio]


class BusTestcase(BackendTestcase):
    """Base of the testcases that run a `Bus` on the backend, through the ``bus`` fixture."""


async def publish_numbered(
    backend: Backend, subject: str, count: int, *, mode: DeliveryMode = ALO, start: int = 0
) -> list[PublishAck]:
    """Publish bodies ``b"0"``, ``b"1"``, … one after the other; return the acks in order."""
    return [
        await backend.publish(subject, {}, str(i).encode(), mode=mode)
        for i in range(start, start + count)
    ]


async def reply_to(backend: Backend, received: Received, body: bytes) -> None:
    """Answer a request delivered as ``received``: publish ``body`` to its reply subject.

    Raises:
        AssertionError: The delivery carries no reply subject.
    """
    assert received.reply, "a request's delivery must carry its reply subject"
    await backend.publish(received.reply, {"answered-by": "kit"}, body, mode=AMO)
