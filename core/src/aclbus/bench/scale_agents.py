"""The agents of the ``scale`` scenario: many on one bus, each as a real deployment has it.

Each agent has an inbox (it is started), one group membership (it joins the scenario's group)
and a heartbeat (it registers in the directory, which keeps its presence by beats). An
`AgentSet` starts them a bounded number at a time, counts what they receive and stops them;
it runs in the process of the scenario (the memory backend) or in a worker process of its own
(`aclbus.bench.scale_worker`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aclbus.acl import ACLMessage
from aclbus.bus import Bus
from aclbus.directory import AgentDescription
from aclbus.errors import ACLBusError

__all__ = ["PHASES", "STARTING", "AgentSet", "Started", "agent_ids", "rss_kb"]

STARTING = 32
"""Agents starting (or stopping) at once: each start is several round trips to the broker."""

PHASES = ("start", "join", "register")
"""The phases of an agent's start: its subscriptions, its group membership, its directory
entry and first heartbeat."""

_STATUS = Path("/proc/self/status")


def rss_kb() -> float:
    """This process' resident memory in KiB, after a garbage collection.

    ``VmRSS`` from ``/proc/self/status`` where there is one (Linux), else the peak resident
    size `resource.getrusage` reports, which only grows.
    """
    gc.collect()
    try:
        for line in _STATUS.read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def agent_ids(first: int, count: int) -> list[str]:
    """The ids of agents ``first`` to ``first + count - 1`` of a step: ``a0``, ``a1``, ..."""
    return [f"a{i}" for i in range(first, first + count)]


@dataclass(frozen=True, slots=True)
class Started:
    """What starting an `AgentSet` took.

    Attributes:
        agents: Agents started.
        seconds: Wall time from the first start to the last agent registered.
        rss_kb: Growth of the process' resident memory over the start, KiB.
        phases: Seconds in each of `PHASES`, summed over the agents.
    """

    agents: int
    seconds: float
    rss_kb: float
    phases: dict[str, float]


_directory_log = logging.getLogger("aclbus.directory")


class _FailedBeats(logging.Handler):
    """Counts the directory's "heartbeat failed" warnings (one per run of failed beats)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "heartbeat failed" in str(record.msg):
            self.count += 1


class AgentSet:
    """Agents on one bus, each started, a member of ``group`` and registered with heartbeats.

    Args:
        bus: A started bus.
        ids: The agents' ids.
        group: The group every agent joins.
        starting: Agents starting or stopping at once.
    """

    def __init__(
        self, bus: Bus, ids: Sequence[str], group: str, *, starting: int = STARTING
    ) -> None:
        self.bus = bus
        self.ids = list(ids)
        self.group = group
        self.received = 0
        """Messages the agents have handled."""
        self.last_arrival = 0.0
        """`time.monotonic` of the last message handled (the same clock in every process)."""
        self.failed_deregisters = 0
        """Agents whose deregistration failed at `stop` (the broker did not answer)."""
        self._beats = _FailedBeats()
        _directory_log.addHandler(self._beats)
        self._heard: set[str] = set()
        self.phases = dict.fromkeys(PHASES, 0.0)
        """Seconds spent in each phase of the starts, summed over the agents (they overlap)."""
        self._room = asyncio.Semaphore(max(1, starting))

    async def _each(self, work: Callable[[str], Awaitable[None]]) -> None:
        async def bounded(agent_id: str) -> None:
            async with self._room:
                await work(agent_id)

        await asyncio.gather(*(bounded(i) for i in self.ids))

    @property
    def heartbeat_outages(self) -> int:
        """Times one of these agents' heartbeats began to fail (the broker did not answer).

        The directory warns at the first failure of a run of them, so this counts runs;
        an agent whose record is not beaten for 3 intervals shows unavailable.
        """
        return self._beats.count

    @property
    def reached(self) -> int:
        """Agents that have handled at least one message."""
        return len(self._heard)

    def _handler(self, agent_id: str) -> Callable[[ACLMessage], Awaitable[None]]:
        heard = self._heard

        async def handle(msg: ACLMessage) -> None:
            self.received += 1
            self.last_arrival = time.monotonic()
            heard.add(agent_id)

        return handle

    async def _start_one(self, agent_id: str) -> None:
        agent = self.bus.agent(agent_id)
        agent.on()(self._handler(agent_id))
        t0 = time.monotonic()
        await agent.start()
        t1 = time.monotonic()
        await agent.join(self.group)
        t2 = time.monotonic()
        await self.bus.directory.register(AgentDescription(agent_id=agent_id))
        t3 = time.monotonic()
        for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            self.phases[phase] += seconds

    async def start(self) -> Started:
        """Start every agent; measure the time and the memory it took.

        Raises:
            ACLBusError: An agent could not start (a consumer limit, the broker away).
        """
        before = rss_kb()
        began = time.monotonic()
        await self._each(self._start_one)
        seconds = time.monotonic() - began
        return Started(len(self.ids), seconds, rss_kb() - before, dict(self.phases))

    async def _stop_one(self, agent_id: str) -> None:
        await self.bus.agent(agent_id).stop()
        try:
            await self.bus.directory.deregister(agent_id)
        except (ACLBusError, TimeoutError):
            # As `Directory.close` does: the beats have stopped, the record expires.
            self.failed_deregisters += 1

    async def stop(self) -> float:
        """Stop every agent and deregister it (its heartbeat ends); return the seconds it took.

        The agents stay members of the group, and their durable consumers stay on the
        broker, as when a deployment stops. A deregistration the broker does not answer is
        counted in `failed_deregisters`.
        """
        began = time.monotonic()
        try:
            await self._each(self._stop_one)
        finally:
            _directory_log.removeHandler(self._beats)
        return time.monotonic() - began
