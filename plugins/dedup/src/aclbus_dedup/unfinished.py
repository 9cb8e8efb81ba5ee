"""The ``done`` records a bus still owes its claims bucket, written in the background.

A delivery whose handler ran but whose ``done`` write kept failing for ``done_wait`` is acked
anyway: holding it longer would not make the bucket answer sooner, and the handler did run.
Its claim stays ``processing`` in the bucket, with its deadline, so a redelivery (an ack lost
in a broker crash) is nacked until that deadline; the write goes on here with a capped pause
between attempts until it lands, another consumer takes the claim over (after its deadline),
or the record's window is over (it has expired from the bucket by then). Meanwhile a delivery
of that message to this bus is skipped (`holds`), since this bus ran it.
"""

from __future__ import annotations

import asyncio
import logging
import math

from aclbus_dedup.claims import Claim, Record, Written
from aclbus_dedup.outage import Outage
from aclbus_dedup.stats import DedupStats

__all__ = ["Unfinished"]

log = logging.getLogger("aclbus.dedup")


class Unfinished:
    """The background ``done`` writes of one bus, by claim key.

    Args:
        stats: Counters to update (``late_done``, ``abandoned``).
        outage: The bucket's reachability, pauses and stop signal.
        window: Seconds a record lives after its last write; None: retried until the stop.
    """

    def __init__(self, stats: DedupStats, outage: Outage, *, window: float | None) -> None:
        self.stats = stats
        self.outage = outage
        self.window = window
        self._writes: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._writes)

    def holds(self, key: str) -> bool:
        """Whether the ``done`` record of ``key`` is still owed: this bus ran the message."""
        return key in self._writes

    def add(self, claim: Claim, done: Record, *, written: float) -> None:
        """Go on writing ``done`` for ``claim`` in the background.

        Args:
            claim: The claim, whose handler ran.
            done: The record to write.
            written: When the claim's record was last written (its TTL runs from then).
        """
        if self.outage.stopped:
            self.stats.abandoned += 1
            log.warning(
                "dedup: %s: the done record is not written (the bus is stopping); the claim "
                "stays processing",
                claim.key,
            )
            return
        expires = written + self.window if self.window is not None else math.inf
        log.warning(
            "dedup: %s: the KV bucket is still out of reach, so the message is acked and its "
            "done record written in the background; until then its claim stays processing",
            claim.key,
        )
        self._writes[claim.key] = asyncio.ensure_future(self._write(claim, done, expires))

    async def _write(self, claim: Claim, done: Record, expires: float) -> None:
        outage = self.outage
        try:
            for pause in outage.pauses():
                left = expires - outage.now()
                if left <= 0 or not await outage.pause(min(pause, left)):
                    self.stats.abandoned += 1
                    if not outage.stopped:
                        log.warning(
                            "dedup: %s: the done record is given up: its window is over, so "
                            "the record has expired from the bucket anyway",
                            claim.key,
                        )
                    return
                written = await claim.write(done, "finish", retry=True)
                if written is Written.WRITTEN:
                    self.stats.late_done += 1
                    log.info("dedup: %s: the done record is written at last", claim.key)
                    return
                if written is Written.LOST:
                    return
        except asyncio.CancelledError:
            self.stats.abandoned += 1
            raise
        finally:
            if self._writes.get(claim.key) is asyncio.current_task():
                del self._writes[claim.key]

    async def close(self) -> None:
        """Stop the background writes (the bus is stopping); those still owed are given up."""
        tasks = list(self._writes.values())
        if not tasks:
            return
        log.warning(
            "dedup: the bus stops with %d done record(s) not written: those messages ran and "
            "were acked; their claims stay processing until their deadlines, after which a "
            "copy of one of them would run again",
            len(tasks),
        )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
