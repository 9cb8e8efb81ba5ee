"""Scatter-gather: one request to several agents at once, their replies collected.

`aclbus.Bus.gather` calls `gather`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from aclbus.acl import ACLMessage
from aclbus.bus_core import BusCore
from aclbus.errors import ConfigurationError
from aclbus.subjects import validate_id

__all__ = ["Gathered", "gather"]


@dataclass(slots=True)
class Gathered:
    """What `gather` (`aclbus.Bus.gather`) collected.

    Attributes:
        asked: The agents asked, in order.
        replies: The replies, by the agent that sent them, in arrival order.
        errors: The agents whose request failed (`NoResponders`, `RequestTimeout`, ...); a
            ``failure`` reply is a reply.
    """

    asked: tuple[str, ...] = ()
    replies: dict[str, ACLMessage] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)

    @property
    def missing(self) -> tuple[str, ...]:
        """The agents asked that neither replied nor failed by the deadline."""
        return tuple(a for a in self.asked if a not in self.replies and a not in self.errors)


async def gather(
    bus: BusCore,
    msg: ACLMessage,
    *,
    receivers: Iterable[str] | None = None,
    group: str | None = None,
    count: int | None = None,
    timeout: float | None = None,
) -> Gathered:
    """Scatter-gather: ask several agents at once, collect their replies.

    The request goes to each receiver's request subject (a copy per receiver, one
    conversation); the call returns when ``count`` replies are in, or at the deadline,
    whichever comes first, with what came.

    Args:
        bus: The bus that asks.
        msg: The request; ``receiver_id`` is set per receiver.
        receivers: The agents to ask.
        group: Ask the current members of this group instead (see `BusCore.group_members`).
        count: Return after this many replies; None: wait for every receiver.
        timeout: Seconds until the deadline (default ``settings.request_timeout``).

    Raises:
        ConfigurationError: Neither or both of ``receivers`` and ``group``; ``count`` < 1.
    """
    if (receivers is None) == (group is None):
        raise ConfigurationError("gather() needs receivers=[...] or group=..., not both")
    if count is not None and count < 1:
        raise ConfigurationError(f"gather(count=...) must be at least 1, got {count}")
    bus.check_started()
    targets = (
        await bus.group_members(group)
        if group is not None
        else [validate_id(r, "receiver") for r in dict.fromkeys(receivers or ())]
    )
    wait = timeout if timeout is not None else bus.settings.request_timeout
    result = Gathered(asked=tuple(targets))
    if not targets:
        return result
    conversation = msg.correlation_id or msg.message_id
    futures: dict[asyncio.Future[ACLMessage], str] = {}
    for target in targets:
        copy = msg.model_copy(
            update={
                "receiver_id": target,
                "receivers": (),
                "correlation_id": conversation,
                "message_id": f"{msg.message_id[:100]}-{len(futures)}",
            }
        )
        futures[await bus.request_future(copy, timeout=wait)] = target
    needed = len(targets) if count is None else min(count, len(targets))
    pending = set(futures)
    deadline = asyncio.get_running_loop().time() + wait
    try:
        while pending and len(result.replies) < needed:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            done, pending = await asyncio.wait(
                pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            for future in done:
                target = futures[future]
                error = future.exception()
                if error is not None:
                    result.errors[target] = error
                elif len(result.replies) < needed:
                    result.replies[target] = future.result()
                else:
                    pending.add(future)  # one too many at once: counted as missing
    finally:
        for future in pending:
            future.cancel()
    return result
