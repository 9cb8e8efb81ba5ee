"""``aclbus demo``: a coordinator and workers exercising each pattern, with a result table.

Each worker runs on a bus of its own (a connection of its own, as a separate process would),
all on one broker — on the nats backend with nothing configured, the embedded nats-server. The
scenario: the coordinator broadcasts an announcement; asks each worker questions by
request-reply; puts work items in the shared ``pool`` inbox, which the workers split between
them (competing consumers, acked); one work item fails on its first delivery and is handled
when the broker redelivers it. Then the workers join a group, which the coordinator asks all at
once (scatter-gather), and they bid for a job in a FIPA Contract Net, which the cheapest wins.

A `Fault` given to `run_demo` is injected halfway through the work items (the NATS adapter's
``aclbus cluster demo`` kills a stream leader's node with it) and recovered from once they are
all handled, before the group gather; the demo says when sending resumed, and its accounting
shows whether any acknowledged work item was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aclbus.acl import ACLMessage, Performative
from aclbus.bus import Bus
from aclbus.middleware import Delivery
from aclbus.protocols import ContractNet, ContractNetParticipant
from aclbus.settings import Settings

__all__ = ["DemoResult", "Fault", "FaultReport", "PatternStats", "run_demo"]

POOL = "pool"
"""The agent id every worker also serves: one shared inbox, split between the workers."""

CREW = "crew"
"""The group every worker joins."""


class Fault(Protocol):
    """Something done to the system halfway through the work items (a node killed, say)."""

    async def inject(self) -> str:
        """Do it; return what was done, in a few words (``"node killed: aclbus-1"``).

        The demo goes on sending as soon as it returns, and measures how long until a send is
        acknowledged again.
        """

    async def recover(self) -> str:
        """Undo it (restart the node), once every work item is handled; say what was done.

        The patterns after the work items (the group gather, the contract net) then run on a
        whole system again.
        """


@dataclass
class FaultReport:
    """When the `Fault` happened and how long sending took to resume after it.

    Attributes:
        what: What the fault did, as it said.
        at: Seconds from the demo's start to the fault.
        resumed_after: Seconds from the fault to the next acknowledged send; None if none was.
        recovered: What the recovery did, as it said; None before it.
    """

    what: str
    at: float
    resumed_after: float | None = None
    recovered: str | None = None

    def __str__(self) -> str:
        resumed = (
            "no send acknowledged after it"
            if self.resumed_after is None
            else f"resumed after {self.resumed_after:.2f}s"
        )
        done = f"{self.what} at t={self.at:.2f}s, {resumed}"
        return done if self.recovered is None else f"{done}; {self.recovered}"


@dataclass
class PatternStats:
    """What one pattern did: messages sent, delivered, failed, and latencies in seconds."""

    sent: int = 0
    delivered: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile of the latencies (seconds), or None without any."""
        if not self.latencies:
            return None
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[round(q * 100) - 1]


@dataclass
class DemoResult:
    """What a demo run measured, per pattern.

    Attributes:
        patterns: Each pattern's counts and latencies.
        backend: The backend's name.
        seconds: How long the run took.
        handled_by: Work items each worker handled.
        acked: Work items whose send was acknowledged.
        lost: Acknowledged work items that no worker handled.
        duplicates: Work items delivered again after a worker had handled them.
        fault: The injected fault, if any.
    """

    patterns: dict[str, PatternStats]
    backend: str
    seconds: float
    handled_by: dict[str, int]
    acked: int = 0
    lost: int = 0
    duplicates: int = 0
    fault: FaultReport | None = None

    @property
    def ok(self) -> bool:
        """True when every pattern delivered all it sent, nothing failed and nothing was lost."""
        delivered = all(p.delivered == p.sent and p.errors == 0 for p in self.patterns.values())
        return delivered and self.lost == 0


class _Scenario:
    def __init__(self, agents: int, messages: int) -> None:
        self.agents = agents
        self.messages = messages
        self.stats: dict[str, PatternStats] = defaultdict(PatternStats)
        self.sent_at: dict[str, float] = {}
        self.handled_by: dict[str, int] = defaultdict(int)
        self.acked: set[str] = set()
        self.handled: set[str] = set()
        self.duplicates = 0
        self.fault: FaultReport | None = None
        self.work_done = asyncio.Event()
        self.broadcast_done = asyncio.Event()
        self.work_total = agents * messages

    def serve(self, bus: Bus, worker_id: str) -> None:
        """Give a worker bus its two agents: ``worker_id`` and the shared ``pool``."""
        me = bus.agent(worker_id)

        @me.on(Performative.INFORM, message_type="demo.announcement")
        async def on_announcement(msg: ACLMessage) -> None:
            self._arrived("broadcast", msg)
            if self.stats["broadcast"].delivered >= self.agents:
                self.broadcast_done.set()

        @me.on(Performative.REQUEST, message_type="demo.question")
        async def on_question(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload={"answer": msg.payload["n"] * 2})

        price = 10 * (1 + int(worker_id.rsplit("-", 1)[-1]))  # worker-1 bids lowest

        async def bid(cfp: ACLMessage) -> dict[str, int]:
            return {"price": price}

        async def perform(cfp: ACLMessage, accept: ACLMessage) -> dict[str, str]:
            return {"done": cfp.payload["job"], "by": worker_id}

        ContractNetParticipant(me, bid, perform)

        @bus.agent(POOL).on(Performative.REQUEST, message_type="demo.work")
        async def on_work(msg: ACLMessage, delivery: Delivery) -> None:
            if msg.payload.get("flaky") and delivery.attempt == 1:
                await delivery.nack(delay=0.05)  # fail once: the broker redelivers it later
                return
            if msg.message_id in self.handled:
                # Redelivered after a failover lost its ack: at least once, so count, not redo.
                self.duplicates += 1
                return
            if msg.payload.get("flaky"):
                self.stats["retry"].delivered += 1
            if msg.message_id in self.sent_at:
                self.handled.add(msg.message_id)
            self.handled_by[worker_id] += 1
            self._arrived("p2p work (pool)", msg)
            if self.stats["p2p work (pool)"].delivered >= self.work_total:
                self.work_done.set()

    def _arrived(self, pattern: str, msg: ACLMessage) -> None:
        sent_at = self.sent_at.get(msg.message_id)
        if sent_at is None:
            return  # left in a persistent inbox by an earlier, interrupted run
        stats = self.stats[pattern]
        stats.delivered += 1
        stats.latencies.append(time.perf_counter() - sent_at)


async def run_demo(
    settings: Settings | None = None,
    *,
    agents: int = 3,
    messages: int = 20,
    duration: float = 60.0,
    console: Console | None = None,
    fault: Fault | None = None,
) -> DemoResult:
    """Run the demo scenario and print its progress and result table.

    Args:
        settings: Bus settings (default: from the environment).
        agents: Number of worker agents, each on a bus of its own.
        messages: Requests per worker, and work items per worker.
        duration: Upper bound on the whole run, in seconds.
        console: Where to print (default: stdout).
        fault: Injected once halfway through sending the work items, and recovered from once
            they are handled (or the deadline passed).

    Returns:
        What the run measured.
    """
    console = console or Console()
    scenario = _Scenario(agents, messages)
    start = time.perf_counter()
    deadline = start + duration
    async with contextlib.AsyncExitStack() as stack:
        coordinator_bus = await stack.enter_async_context(Bus(settings))
        backend = coordinator_bus.backend.name
        console.print(f"aclbus demo: {agents} workers on backend [bold]{backend}[/bold]")
        workers = [f"worker-{i}" for i in range(1, agents + 1)]
        for worker_id in workers:
            worker_bus = coordinator_bus.sibling()
            scenario.serve(worker_bus, worker_id)
            await stack.enter_async_context(worker_bus)
            crew_member = worker_bus.agent(worker_id)
            await crew_member.join(CREW)
            # leave on the way out: the membership is stored, and a later run may have fewer
            stack.push_async_callback(crew_member.leave, CREW)
        coordinator = coordinator_bus.agent("coordinator")
        columns = (
            TextColumn("{task.description:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=True) as progress:
            await _broadcast(coordinator_bus, coordinator.id, scenario, progress, deadline)
            await _questions(coordinator_bus, coordinator.id, workers, scenario, progress)
            await _work(
                coordinator_bus, coordinator.id, scenario, progress, deadline, console, fault, start
            )
            await _gather(coordinator_bus, coordinator.id, workers, scenario, progress)
            await _contract_net(coordinator_bus, workers, scenario, progress)
    result = DemoResult(
        dict(scenario.stats),
        backend,
        time.perf_counter() - start,
        dict(scenario.handled_by),
        acked=len(scenario.acked),
        lost=len(scenario.acked - scenario.handled),
        duplicates=scenario.duplicates,
        fault=scenario.fault,
    )
    console.print(_table(result))
    split = ", ".join(f"{w}: {n}" for w, n in sorted(result.handled_by.items()))
    console.print(f"pool work split between workers: {split}")
    if result.fault is not None:
        console.print(str(result.fault), soft_wrap=True)
    console.print(
        f"work items acknowledged: {result.acked}, handled: {result.acked - result.lost}, "
        f"lost: {result.lost}, delivered again: {result.duplicates}",
        soft_wrap=True,
    )
    return result


async def _broadcast(
    bus: Bus, sender: str, scenario: _Scenario, progress: Progress, deadline: float
) -> None:
    task = progress.add_task("broadcast", total=scenario.agents)
    announcement = ACLMessage(
        performative=Performative.INFORM,
        sender_id=sender,
        message_type="demo.announcement",
        payload={"text": "hello, agents"},
    )
    scenario.sent_at[announcement.message_id] = time.perf_counter()
    scenario.stats["broadcast"].sent += scenario.agents
    await bus.broadcast(announcement)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            scenario.broadcast_done.wait(), max(0.1, deadline - time.perf_counter())
        )
    progress.update(task, completed=scenario.stats["broadcast"].delivered)


async def _questions(
    bus: Bus, sender: str, workers: list[str], scenario: _Scenario, progress: Progress
) -> None:
    stats = scenario.stats["request-reply"]
    task = progress.add_task("request-reply", total=len(workers) * scenario.messages)
    for worker_id in workers:
        for n in range(scenario.messages):
            question = ACLMessage(
                performative=Performative.REQUEST,
                sender_id=sender,
                receiver_id=worker_id,
                message_type="demo.question",
                payload={"n": n},
            )
            stats.sent += 1
            t0 = time.perf_counter()
            try:
                reply = await bus.request(question, timeout=5.0)
            except Exception:
                stats.errors += 1
                continue
            stats.latencies.append(time.perf_counter() - t0)
            if reply.payload == {"answer": n * 2} and reply.sender_id == worker_id:
                stats.delivered += 1
            else:
                stats.errors += 1
            progress.advance(task)


async def _work(
    bus: Bus,
    sender: str,
    scenario: _Scenario,
    progress: Progress,
    deadline: float,
    console: Console,
    fault: Fault | None,
    start: float,
) -> None:
    stats = scenario.stats["p2p work (pool)"]
    task = progress.add_task("p2p work (pool)", total=scenario.work_total)
    flaky = scenario.work_total // 2
    faulted_at: float | None = None
    for i in range(scenario.work_total):
        if fault is not None and i == flaky:
            what = await fault.inject()
            faulted_at = time.perf_counter()
            scenario.fault = FaultReport(what, faulted_at - start)
        item = ACLMessage(
            performative=Performative.REQUEST,
            sender_id=sender,
            receiver_id=POOL,
            message_type="demo.work",
            payload={"item": i, "flaky": i == flaky},
        )
        scenario.sent_at[item.message_id] = time.perf_counter()
        stats.sent += 1
        if i == flaky:
            # Counted when sent: handled on any later attempt (a failover may take the first).
            scenario.stats["retry"].sent += 1
        await bus.send(item)
        scenario.acked.add(item.message_id)
        if faulted_at is not None and scenario.fault is not None:
            scenario.fault.resumed_after = time.perf_counter() - faulted_at
            faulted_at = None
        progress.update(task, completed=stats.delivered)
    while not scenario.work_done.is_set() and time.perf_counter() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(scenario.work_done.wait(), 0.1)
        progress.update(task, completed=stats.delivered)
    if not scenario.work_done.is_set():
        console.print("[red]not every work item was handled before the deadline")
    if fault is not None and scenario.fault is not None:
        scenario.fault.recovered = await fault.recover()


async def _gather(
    bus: Bus, sender: str, workers: list[str], scenario: _Scenario, progress: Progress
) -> None:
    stats = scenario.stats["scatter-gather"]
    task = progress.add_task("scatter-gather", total=scenario.messages)
    for n in range(scenario.messages):
        question = ACLMessage(
            performative=Performative.REQUEST,
            sender_id=sender,
            message_type="demo.question",
            payload={"n": n},
        )
        stats.sent += len(workers)
        t0 = time.perf_counter()
        gathered = await bus.gather(question, group=CREW, timeout=5.0)
        elapsed = time.perf_counter() - t0
        for worker_id, reply in gathered.replies.items():
            if reply.payload == {"answer": n * 2} and worker_id in workers:
                stats.delivered += 1
                stats.latencies.append(elapsed)
            else:
                stats.errors += 1
        stats.errors += len(gathered.errors)
        progress.advance(task)


async def _contract_net(
    bus: Bus, workers: list[str], scenario: _Scenario, progress: Progress
) -> None:
    stats = scenario.stats["contract-net"]
    task = progress.add_task("contract-net", total=1)
    stats.sent += len(workers)
    t0 = time.perf_counter()
    try:
        outcome = await ContractNet(
            bus.agent("manager"),
            workers,
            {"job": "index the archive"},
            deadline=2.0,
            result_deadline=5.0,
            select=lambda bids: [min(bids, key=lambda b: bids[b].payload["price"])],
        ).run()
    except Exception:
        stats.errors += 1
        return
    stats.latencies.append(time.perf_counter() - t0)
    stats.delivered += len(outcome.proposals)
    # the cheapest bid wins, does the job and says so; the others are rejected
    if outcome.accepted != (workers[0],) or workers[0] not in outcome.results:
        stats.errors += 1
    progress.advance(task)


def _table(result: DemoResult) -> Table:
    table = Table(title=f"aclbus demo on {result.backend} ({result.seconds:.2f} s)")
    for column in ("pattern", "sent", "delivered", "errors", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "pattern" else "right")
    for name, p in result.patterns.items():
        cells = []
        for q in (0.5, 0.95, 0.99):
            value = p.quantile(q)
            cells.append("-" if value is None else f"{value * 1000:.2f}")
        table.add_row(name, str(p.sent), str(p.delivered), str(p.errors), *cells)
    return table
