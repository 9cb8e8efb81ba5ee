"""``aclbus demo``: a coordinator and workers exercising each pattern, with a result table.

The scenario: the coordinator broadcasts an announcement, sends each worker requests and
waits for the replies, hands out work items to the workers' durable inboxes (acked by the
workers), and one work item fails on its first attempt and succeeds when redelivered.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from aclbus.acl import ACLMessage, Performative
from aclbus.bus import Bus
from aclbus.middleware import Delivery
from aclbus.settings import Settings

__all__ = ["DemoResult", "run_demo"]


@dataclass
class _Pattern:
    sent: int = 0
    delivered: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass
class DemoResult:
    """What a demo run measured, per pattern."""

    patterns: dict[str, _Pattern]
    backend: str
    seconds: float

    @property
    def ok(self) -> bool:
        """True when every pattern delivered all it sent and nothing failed for good."""
        return all(p.delivered == p.sent and p.errors == 0 for p in self.patterns.values())


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


async def run_demo(
    settings: Settings | None = None,
    *,
    agents: int = 3,
    messages: int = 20,
    duration: float = 30.0,
    console: Console | None = None,
) -> DemoResult:
    """Run the demo scenario and print its progress and result table.

    Args:
        settings: Bus settings (default: from the environment).
        agents: Number of worker agents.
        messages: Requests and work items per worker.
        duration: Upper bound on the whole run, in seconds.
        console: Where to print (default: stdout).
    """
    console = console or Console()
    stats: dict[str, _Pattern] = defaultdict(_Pattern)
    sent_at: dict[str, float] = {}
    done = asyncio.Event()
    expected_work = agents * messages
    bus = Bus(settings)
    workers = [bus.agent(f"worker-{i}") for i in range(1, agents + 1)]
    coordinator = bus.agent("coordinator")

    for worker in workers:

        @worker.on(Performative.INFORM, message_type="demo.announcement")
        async def on_announcement(msg: ACLMessage) -> None:
            stats["broadcast"].delivered += 1
            stats["broadcast"].latencies.append(time.perf_counter() - sent_at[msg.message_id])

        @worker.on(Performative.REQUEST, message_type="demo.question")
        async def on_question(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload={"answer": msg.payload["n"] * 2})

        @worker.on(Performative.REQUEST, message_type="demo.work")
        async def on_work(msg: ACLMessage, delivery: Delivery) -> None:
            if msg.payload.get("flaky") and delivery.attempt == 1:
                stats["retry"].sent += 1
                await delivery.nack(delay=0.05)  # fail once: the broker redelivers it later
                return
            if msg.payload.get("flaky"):
                stats["retry"].delivered += 1
            stats["p2p work"].delivered += 1
            stats["p2p work"].latencies.append(time.perf_counter() - sent_at[msg.message_id])
            if stats["p2p work"].delivered >= expected_work:
                done.set()

    start = time.perf_counter()
    async with bus:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("demo", total=3 + expected_work + agents * messages)

            announcement = coordinator.message(
                Performative.INFORM, message_type="demo.announcement", payload={"text": "hello"}
            )
            sent_at[announcement.message_id] = time.perf_counter()
            await bus.broadcast(announcement)
            stats["broadcast"].sent += agents
            progress.advance(task)

            for worker in workers:
                for n in range(messages):
                    question = coordinator.message(
                        Performative.REQUEST,
                        receiver_id=worker.id,
                        message_type="demo.question",
                        payload={"n": n},
                    )
                    stats["request-reply"].sent += 1
                    t0 = time.perf_counter()
                    try:
                        reply = await bus.request(question, timeout=5.0)
                    except Exception as exc:
                        stats["request-reply"].errors += 1
                        console.print(f"[red]request to {worker.id} failed: {exc}")
                        continue
                    stats["request-reply"].latencies.append(time.perf_counter() - t0)
                    if reply.payload == {"answer": n * 2}:
                        stats["request-reply"].delivered += 1
                    else:
                        stats["request-reply"].errors += 1
                    progress.advance(task)

            for i in range(expected_work):
                worker = workers[i % agents]
                item = coordinator.message(
                    Performative.REQUEST,
                    receiver_id=worker.id,
                    message_type="demo.work",
                    payload={"item": i, "flaky": i == expected_work // 2},
                )
                sent_at[item.message_id] = time.perf_counter()
                await bus.send(item)
                stats["p2p work"].sent += 1
                progress.advance(task)

            try:
                await asyncio.wait_for(
                    done.wait(), timeout=max(0.1, duration - (time.perf_counter() - start))
                )
            except TimeoutError:
                console.print(f"[red]work items not all handled within {duration:g} s")
            # broadcasts are handled concurrently with the rest: give stragglers a moment
            for _ in range(50):
                if stats["broadcast"].delivered >= agents:
                    break
                await asyncio.sleep(0.01)
            progress.advance(task, 2)
        backend = bus.backend.name
    result = DemoResult(dict(stats), backend, time.perf_counter() - start)
    console.print(_table(result))
    return result


def _table(result: DemoResult) -> Table:
    table = Table(title=f"aclbus demo on {result.backend} ({result.seconds:.2f} s)")
    for column in ("pattern", "sent", "delivered", "errors", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "pattern" else "right")
    for name, p in result.patterns.items():
        table.add_row(
            name,
            str(p.sent),
            str(p.delivered),
            str(p.errors),
            *(
                f"{_quantile(p.latencies, q) * 1000:.2f}" if p.latencies else "-"
                for q in (0.5, 0.95, 0.99)
            ),
        )
    return table
