"""Presence: the heartbeat an agent writes, and the rule that says whether it is available.

A registered agent writes a `Presence` record (its last beat time and its interval) into the
presence bucket every interval. It is **available** while its last beat is less than
`MISSED_BEATS` intervals old. The rule reads the beat time from the record instead of relying
on the bucket dropping old entries, because a JetStream KV bucket's TTL removes entries
without telling watchers; the bucket's TTL only clears the records of agents that died.

Beat times are wall-clock seconds: `time.time` on a real broker (so hosts' clocks must agree
to well within one interval), or the memory engine's own clock, which a test moves by hand.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from aclbus.dlq import redact
from aclbus.subjects import validate_id

__all__ = ["MISSED_BEATS", "Heartbeat", "Presence"]

log = logging.getLogger("aclbus.directory")

MISSED_BEATS = 3
"""An agent whose last beat is this many intervals old (or older) is unavailable."""


@dataclass(frozen=True, slots=True)
class Presence:
    """One agent's last heartbeat, as stored in the presence bucket.

    Attributes:
        agent_id: The agent.
        beat: When it last beat, in wall-clock seconds since the epoch.
        interval: The seconds between its beats.
    """

    agent_id: str
    beat: float
    interval: float

    @property
    def deadline(self) -> float:
        """The wall-clock second from which the agent is unavailable unless it beats again."""
        return self.beat + MISSED_BEATS * self.interval

    @property
    def last_seen(self) -> datetime:
        """`beat` as a UTC datetime."""
        return datetime.fromtimestamp(self.beat, tz=UTC)

    def available(self, now: float) -> bool:
        """Whether the agent counts as available at wall-clock second ``now``."""
        return now < self.deadline

    def to_json(self) -> bytes:
        """The record as stored: ``{"agent_id": …, "beat": …, "interval": …}``."""
        return orjson.dumps(
            {"agent_id": self.agent_id, "beat": self.beat, "interval": self.interval}
        )

    @classmethod
    def from_json(cls, data: bytes, key: str) -> Presence:
        """Read a stored record.

        Args:
            data: The stored JSON.
            key: The key it was stored under (the agent id).

        Raises:
            ValueError: Not a valid record (a bad writer): the caller treats the agent as
                unavailable.
        """
        raw = orjson.loads(data)
        if not isinstance(raw, dict):
            raise ValueError(f"presence of {key!r} is not a JSON object")
        beat, interval = _number(raw.get("beat")), _number(raw.get("interval"))
        if beat is None or interval is None or interval <= 0:
            raise ValueError(f"presence of {key!r} lacks a finite beat and a positive interval")
        return cls(validate_id(key), beat, interval)


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class Heartbeat:
    """The task that writes one agent's presence every interval until stopped.

    A beat that fails (the connection is down) is logged and tried again half an interval
    later; nothing but `stop` ends the task.

    Args:
        agent_id: The agent.
        interval: Seconds between beats.
        beat: Writes one beat.
        sleep: Waits on the backend's time.
    """

    def __init__(
        self,
        agent_id: str,
        interval: float,
        beat: Callable[[], Awaitable[None]],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.agent_id = agent_id
        self.interval = interval
        self._beat = beat
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()  # of the running task; a new one at each start
        self.failures = 0
        """Beats that failed in a row (0 while beating fine)."""

    @property
    def running(self) -> bool:
        """True between `start` and `stop`."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start beating (the caller wrote the first beat itself)."""
        if self._task is None:
            self._stopped = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(self._stopped), name=f"aclbus-heartbeat-{self.agent_id}"
            )

    async def stop(self) -> None:
        """Stop beating, at once; idempotent."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            # Said before the cancellation, which a beat may swallow: on Python 3.11,
            # `asyncio.wait_for` (nats-py's request) returns its result when the reply and
            # the cancellation come together, and the task would beat on while we wait.
            self._stopped.set()
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being cancelled ourselves, not just our beat task

    async def _run(self, stopped: asyncio.Event) -> None:
        while not stopped.is_set():
            await self._sleep(self.interval if not self.failures else self.interval / 2)
            try:
                await self._beat()
            except Exception as exc:
                self.failures += 1
                # Warn once per outage, not every half interval.
                level = logging.WARNING if self.failures == 1 else logging.DEBUG
                log.log(
                    level,
                    "agent %s: heartbeat failed (%d in a row), retrying: %s: %s",
                    self.agent_id,
                    self.failures,
                    type(exc).__name__,
                    redact(str(exc)),  # an exception's text may hold a credential
                )
            else:
                if self.failures:
                    log.info(
                        "agent %s: heartbeat back after %d failures", self.agent_id, self.failures
                    )
                self.failures = 0
