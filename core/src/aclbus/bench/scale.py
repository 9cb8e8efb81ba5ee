"""``aclbus bench scale``: what each agent costs as agents grow, on one broker.

A step starts K agents (each with an inbox, one group membership and a heartbeat: see
`aclbus.bench.scale_agents`) in P worker processes on one broker, or in this process on the
memory backend, and measures:

- the wall time to start them all, per agent;
- the growth of resident memory per agent (summed over the processes that hold them);
- the consumers the broker holds per agent, by stream (``stream_usage``);
- the throughput of ``messages`` sends to random agents' inboxes (``window`` awaiting their
  PubAck at once), from first send to last arrival; and the time one multicast to the group
  takes to reach every agent;
- the wall time to stop them all, per agent.

Each step runs under a subject prefix of its own, so its streams hold only its consumers;
afterwards the step's consumers are deleted. With no broker configured, the NATS backend's
embedded server is started once for the run, in a data dir the workers share.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aclbus.acl import ACLMessage, Performative
from aclbus.bench.drivers import publish_many
from aclbus.bench.errors import BenchError, BenchTimeout
from aclbus.bench.runner import bench_plugins
from aclbus.bench.scale_agents import PHASES, AgentSet, Started, agent_ids
from aclbus.bench.scale_worker import WorkerProcess
from aclbus.bus import Bus
from aclbus.errors import ACLBusError
from aclbus.provisioning import provisioned_traffic
from aclbus.settings import Settings
from aclbus.subjects import TrafficClass
from aclbus.subscriptions import consumers_per_agent

__all__ = ["ScaleOptions", "ScaleStep", "render_scale", "run_scale"]

GROUP = "scale"
"""The group every agent joins."""
_POLL = 0.05
"""Seconds between two looks at the agents' arrival counts."""


@dataclass(frozen=True, slots=True)
class ScaleOptions:
    """What ``aclbus bench scale`` runs.

    Attributes:
        agents: Agents of each step, in order.
        processes: Worker processes each agent count is spread over (1 and more), one step
            each. The memory backend lives in one process: there, 1 only.
        messages: Sends to random agents' inboxes in each step's throughput run.
        window: Sends awaiting their PubAck at once.
        timeout: Seconds each part of a step (starting, sending, stopping) may take.
        seed: Seed of the random choice of receivers.
    """

    agents: Sequence[int] = (10, 100, 1_000)
    processes: Sequence[int] = (1,)
    messages: int = 2_000
    window: int = 64
    timeout: float = 600.0
    seed: int = 0

    def checked(self, backend: str) -> ScaleOptions:
        """These options, checked for ``backend``.

        Raises:
            BenchError: A count that cannot work, or several processes on the memory backend.
        """
        if not self.agents or min(self.agents) < 1:
            raise BenchError(f"agents must be at least 1, got {list(self.agents)!r}")
        if not self.processes or min(self.processes) < 1:
            raise BenchError(f"processes must be at least 1, got {list(self.processes)!r}")
        if backend == "memory" and max(self.processes) > 1:
            raise BenchError(
                "the memory backend lives in one process: other processes cannot reach it "
                "(use --processes 1, or ACLBUS_BACKEND=nats)"
            )
        for name, value in (("messages", self.messages), ("window", self.window)):
            if value < 1:
                raise BenchError(f"{name} must be at least 1, got {value!r}")
        if not self.timeout > 0:
            raise BenchError(f"timeout must be positive, got {self.timeout!r}")
        return self


@dataclass(slots=True)
class ScaleStep:
    """The figures of one step: ``agents`` agents in ``processes`` processes.

    Attributes:
        agents: Agents started.
        processes: Processes holding them (0: the scenario's own, on the memory backend).
        started: Agents that reported started.
        start_s: Wall time to start every agent (in the slowest process).
        ready_s: Wall time from spawning the processes to every agent started (their
            interpreters' start and the connections included).
        rss_kb: Growth of resident memory over the start, summed over the processes.
        phases_ms_per_agent: Milliseconds each agent spent in each phase of its start
            (`PHASES`: subscribing, joining the group, registering); starts overlap, so
            these add up to more than ``start_s`` per agent.
        consumers: Consumers the broker held after the start, by traffic class.
        expected_consumers: Consumers per agent by traffic class, as
            `consumers_per_agent` counts them plus the group membership.
        messages: Messages sent to inboxes in the throughput run.
        send_s: Seconds from the first send to the last arrival.
        multicast_s: Seconds from one multicast to its arrival at every agent.
        received: Messages the agents handled: ``messages`` and the multicast's ``agents``.
        reached: Agents that handled at least one (every one, when the multicast reached
            them all).
        stop_s: Wall time to stop every agent.
        heartbeat_outages: Times an agent's heartbeats began to fail (the broker did not
            answer in time), over the step.
        failed_deregisters: Agents whose deregistration at stop got no answer.
        cleanup_s: Seconds deleting the step's consumers took afterwards.
        error: Why the step failed (its agents could not start, a part timed out); None when
            it ran through. The figures before the failure are kept.
    """

    agents: int
    processes: int
    started: int = 0
    start_s: float = 0.0
    ready_s: float = 0.0
    rss_kb: float = 0.0
    phases_ms_per_agent: dict[str, float] = field(default_factory=dict)
    consumers: dict[str, int] = field(default_factory=dict)
    expected_consumers: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    send_s: float = 0.0
    multicast_s: float = 0.0
    received: int = 0
    reached: int = 0
    stop_s: float = 0.0
    heartbeat_outages: int = 0
    failed_deregisters: int = 0
    cleanup_s: float = 0.0
    error: str | None = None

    @property
    def consumers_per_agent(self) -> float:
        """Consumers on the broker per agent."""
        return sum(self.consumers.values()) / self.agents

    def summary(self) -> str:
        """The step in one line (what the command prints as each step ends)."""
        if self.error is not None:
            return f"failed: {self.error}"
        f = self.figures()
        return (
            f"started in {self.start_s:.1f} s ({f['start_ms_per_agent']:.2f} ms/agent), "
            f"{f['rss_kb_per_agent']:.1f} KB/agent, {f['consumers_per_agent']:.2f} "
            f"consumers/agent, {f['msg_s']:,.0f} msg/s, stopped in {self.stop_s:.1f} s, "
            f"{self.heartbeat_outages} heartbeat outages"
        )

    def figures(self) -> dict[str, Any]:
        """The step as a plain dict, with the per-agent figures (JSON)."""
        return {
            **asdict(self),
            "start_ms_per_agent": round(1000 * self.start_s / self.agents, 3),
            "rss_kb_per_agent": round(self.rss_kb / self.agents, 1),
            "consumers_per_agent": round(self.consumers_per_agent, 2),
            "msg_s": round(self.messages / self.send_s, 1) if self.send_s else 0.0,
            "stop_ms_per_agent": round(1000 * self.stop_s / self.agents, 3),
        }


class _Holders:
    """Where a step's agents run: an `AgentSet` here, or worker processes."""

    def __init__(self, local: AgentSet | None, workers: list[WorkerProcess]) -> None:
        self.local = local
        self.workers = workers

    async def started(self, timeout: float) -> list[Started]:
        if self.local is not None:
            return [await asyncio.wait_for(self.local.start(), timeout)]
        return list(await asyncio.gather(*(w.started(timeout) for w in self.workers)))

    async def received(self) -> tuple[int, int, float]:
        if self.local is not None:
            return self.local.received, self.local.reached, self.local.last_arrival
        counts = await asyncio.gather(*(w.received() for w in self.workers))
        return (
            sum(n for n, _, _ in counts),
            sum(r for _, r, _ in counts),
            max(last for _, _, last in counts),
        )

    async def stop(self, timeout: float) -> tuple[float, int, int]:
        if self.local is not None:
            local = self.local
            seconds = await asyncio.wait_for(local.stop(), timeout)
            return seconds, local.heartbeat_outages, local.failed_deregisters
        stops = await asyncio.gather(*(w.stop(timeout) for w in self.workers))
        return (
            max(s for s, _, _ in stops),
            sum(h for _, h, _ in stops),
            sum(d for _, _, d in stops),
        )

    async def kill(self) -> None:
        for worker in self.workers:
            await worker.kill()


def _split(agents: int, processes: int) -> list[tuple[int, int]]:
    """(first, count) of each process' share of ``agents``, as even as they go."""
    base, extra = divmod(agents, processes)
    shares, first = [], 0
    for p in range(processes):
        count = base + (1 if p < extra else 0)
        if count:
            shares.append((first, count))
        first += count
    return shares


async def _arrived(
    holders: _Holders, expected: int, timeout: float, what: str
) -> tuple[int, int, float]:
    """Wait until the agents handled ``expected`` messages in all (`_Holders.received`)."""
    deadline = time.monotonic() + timeout
    while True:
        count, reached, last = await holders.received()
        if count >= expected:
            return count, reached, last
        if time.monotonic() > deadline:
            raise BenchTimeout("scale", what, timeout, f"{count} of {expected} messages arrived")
        await asyncio.sleep(_POLL)


async def _consumers(bus: Bus) -> dict[str, int]:
    if not bus.backend.capabilities.persistent:
        return {}
    counts: dict[str, int] = {}
    for traffic in provisioned_traffic(bus.settings):
        usage = await bus.backend.stream_usage(bus.subjects.stream(traffic))
        counts[traffic.value] = usage.consumers
    return counts


def _expected(settings: Settings) -> dict[str, int]:
    per_agent = {t.value: n for t, n in consumers_per_agent(settings).items()}
    per_agent[TrafficClass.GROUP.value] += 1  # the scenario's group
    return per_agent


async def _cleanup(bus: Bus, agents: int) -> None:
    """Delete the consumers of the step's agents (the streams stay, nearly empty)."""
    if not bus.backend.capabilities.durable:
        return
    s = bus.subjects
    names = [
        *((TrafficClass.INBOX, kind) for kind in ("agent", "prio")),
        (TrafficClass.BROADCAST, "broadcast"),
    ]
    room = asyncio.Semaphore(32)

    async def clean(agent_id: str) -> None:
        async with room:
            for traffic, kind in names:
                with contextlib.suppress(Exception):  # not there: nothing to delete
                    await bus.backend.delete_consumer(s.stream(traffic), s.durable(kind, agent_id))
            with contextlib.suppress(Exception):
                await bus.backend.delete_consumer(
                    s.stream(TrafficClass.GROUP), s.durable("group", GROUP, agent_id)
                )

    await asyncio.gather(*(clean(i) for i in agent_ids(0, agents)))


async def _step(
    base: Settings, agents: int, processes: int, options: ScaleOptions, in_process: bool
) -> ScaleStep:
    settings = base.model_copy(update={"subject_prefix": f"scale{secrets.token_hex(3)}"})
    step = ScaleStep(agents, 0 if in_process else processes)
    timeout = options.timeout
    async with Bus(settings) as bus:
        if in_process:
            holders = _Holders(AgentSet(bus, agent_ids(0, agents), GROUP), [])
        else:
            overrides = {
                "subject_prefix": settings.subject_prefix,
                "data_dir": str(settings.data_dir) if settings.data_dir else None,
                "plugins": settings.plugins,
            }
            holders = _Holders(
                None,
                [
                    WorkerProcess(overrides, first, count, GROUP)
                    for first, count in _split(agents, processes)
                ],
            )
        try:
            await _measure(bus, holders, options, step)
        except (ACLBusError, TimeoutError) as exc:
            # Where a step fails is a figure too (a consumer limit, say): the run goes on.
            step.error = f"{type(exc).__name__}: {exc}"
        finally:
            await holders.kill()
            began = time.monotonic()
            await asyncio.wait_for(_cleanup(bus, agents), timeout)
            step.cleanup_s = time.monotonic() - began
    return step


async def _measure(bus: Bus, holders: _Holders, options: ScaleOptions, step: ScaleStep) -> None:
    timeout, agents = options.timeout, step.agents
    for worker in holders.workers:
        await worker.spawn()
    began = time.monotonic()
    started = await holders.started(timeout)
    step.ready_s = time.monotonic() - began
    # Processes start their agents side by side: as long as the slowest of them.
    step.started = sum(s.agents for s in started)
    step.start_s = max(s.seconds for s in started)
    step.rss_kb = sum(s.rss_kb for s in started)
    step.phases_ms_per_agent = {
        phase: round(1000 * sum(s.phases[phase] for s in started) / agents, 3) for phase in PHASES
    }
    step.consumers = await _consumers(bus)
    step.expected_consumers = _expected(bus.settings) if step.consumers else {}
    await _throughput(bus, holders, agents, options, step)
    step.stop_s, step.heartbeat_outages, step.failed_deregisters = await holders.stop(timeout)


async def _throughput(
    bus: Bus, holders: _Holders, agents: int, options: ScaleOptions, step: ScaleStep
) -> None:
    rng = random.Random(options.seed)
    receivers = [f"a{rng.randrange(agents)}" for _ in range(options.messages)]

    async def send(i: int) -> None:
        await bus.send(
            ACLMessage(
                performative=Performative.INFORM, sender_id="scale-sender", receiver_id=receivers[i]
            )
        )

    began = time.monotonic()
    await asyncio.wait_for(publish_many(send, options.messages, options.window), options.timeout)
    _, _, last = await _arrived(holders, options.messages, options.timeout, "inbox throughput")
    step.messages, step.send_s = options.messages, max(last - began, 1e-9)
    began = time.monotonic()
    await bus.multicast(
        GROUP, ACLMessage(performative=Performative.INFORM, sender_id="scale-sender")
    )
    expected = options.messages + agents
    step.received, step.reached, last = await _arrived(
        holders, expected, options.timeout, "multicast"
    )
    step.multicast_s = max(last - began, 0.0)


def _base_settings(settings: Settings | None, data_dir: Path) -> Settings:
    base = settings if settings is not None else Settings()
    update: dict[str, Any] = {"plugins": bench_plugins(base)}
    if base.data_dir is None:
        # Workers find the embedded server through the data dir it serves (shared).
        update["data_dir"] = data_dir
    return base.model_copy(update=update)


async def run_scale(
    options: ScaleOptions,
    *,
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[ScaleStep], dict[str, Any]]:
    """Run every step (agents x processes) and return the figures and the broker's facts.

    Args:
        options: What to run.
        settings: The settings (by default the environment's: the embedded NATS server when
            none is configured); each step adds a subject prefix of its own.
        progress: Told what each step is before it runs, and its figures (or why it
            failed) after.

    A step that fails (its agents cannot start, a part of it times out) is reported with
    its error in `ScaleStep.error`, and the next step runs.

    Raises:
        BenchError: Bad options.
    """
    with tempfile.TemporaryDirectory(prefix="aclbus-scale-") as scratch:
        base = _base_settings(settings, Path(scratch))
        # This bus holds the embedded server (if any) for the whole run; the steps' buses
        # and workers share it through the data dir.
        async with Bus(base.model_copy(update={"subject_prefix": "scalehost"})) as host:
            backend = host.backend.name
            options = options.checked(backend)
            in_process = backend == "memory"
            steps: list[ScaleStep] = []
            for processes in options.processes:
                for agents in options.agents:
                    if progress is not None:
                        where = "this process" if in_process else f"{processes} process(es)"
                        progress(f"{agents} agents in {where}")
                    step = await _step(base, agents, processes, options, in_process)
                    steps.append(step)
                    if progress is not None:
                        progress(f"{agents} agents: {step.summary()}")
            facts = await host.backend.describe()
    environment = {"backend": backend, **_broker_facts(facts)}
    return steps, environment


def _broker_facts(facts: dict[str, Any]) -> dict[str, Any]:
    jetstream = facts.get("jetstream") or {}
    out: dict[str, Any] = {}
    if "server_version" in facts:
        out["server"] = facts["server_version"]
    if "max_consumers" in jetstream:
        out["account_max_consumers"] = jetstream["max_consumers"]
    return out


def render_scale(steps: Sequence[ScaleStep]) -> str:
    """The steps as a Markdown table."""
    head = (
        "| agents | processes | start ms/agent | KB/agent | consumers/agent | msg/s | "
        "multicast to all ms | stop ms/agent | heartbeat outages |"
    )
    lines = [head, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for step in steps:
        f = step.figures()
        if step.error is not None:
            lines.append(
                f"| {step.agents:,} | {step.processes or 'in-process'} | "
                f"failed: {step.error} | | | | | | |"
            )
            continue
        lines.append(
            f"| {step.agents:,} | {step.processes or 'in-process'} | "
            f"{f['start_ms_per_agent']:.2f} | {f['rss_kb_per_agent']:.1f} | "
            f"{f['consumers_per_agent']:.2f} | {f['msg_s']:,.0f} | "
            f"{1000 * step.multicast_s:,.0f} | {f['stop_ms_per_agent']:.2f} | "
            f"{step.heartbeat_outages:,} |"
        )
    return "\n".join(lines)
