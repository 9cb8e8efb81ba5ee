"""The ``failover`` benchmark: stream-leader SIGKILLs under steady publishing, measured.

On a fresh 3-node `Cluster` with R3 streams, real agents exchange messages steadily
(`Traffic`). Each round SIGKILLs the node leading the stream, measures the time from the kill
to the next PubAck, restarts the node and waits until it is current again. At the end every
acked message is accounted for. Run it with::

    aclbus bench failover --kills 20    # or: python -m aclbus_nats.bench.failover --kills 20

The time to the next PubAck is bounded below by nats-server's Raft election timeout, which is
randomized and not configurable (docs/reliability.md, "Failover").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats

from aclbus import Bus, Settings
from aclbus.bench.stats import percentile
from aclbus.settings import StreamLimits
from aclbus_nats.backend import NatsBackend
from aclbus_nats.bench.traffic import Accounting, Traffic
from aclbus_nats.server import Cluster
from aclbus_nats.settings import NatsSettings

__all__ = ["FailoverReport", "main", "measure_failover", "run_failover"]

_RECOVERY = 60.0
"""Seconds one kill may take to heal before the run fails."""
_SETTLE = 0.5
"""Seconds of steady traffic before the first kill and after each restart."""


@dataclass(slots=True)
class FailoverReport:
    """What a `measure_failover` run measured.

    Attributes:
        gaps: Seconds from each SIGKILL to the next PubAck, in order.
        steady_rate: Acked messages per second before the first kill.
        degraded_rate: Acked messages per second from each kill until the killed node was
            back and current (the gap included), over all kills.
        accounting: What happened to every message.
        elapsed: Seconds the run took.
    """

    gaps: list[float] = field(default_factory=list)
    steady_rate: float = 0.0
    degraded_rate: float = 0.0
    accounting: Accounting = field(default_factory=Accounting)
    elapsed: float = 0.0

    def figures(self) -> dict[str, Any]:
        """The figures, in seconds and messages, as a plain dict (JSON)."""
        gaps = self.gaps or [0.0]
        return {
            "kills": len(self.gaps),
            "next_puback_p50_s": round(percentile(gaps, 50), 3),
            "next_puback_p99_s": round(percentile(gaps, 99), 3),
            "next_puback_max_s": round(max(gaps), 3),
            "next_puback_min_s": round(min(gaps), 3),
            "acked": len(self.accounting.acked),
            "lost": len(self.accounting.lost),
            "duplicates_stored": self.accounting.duplicates_stored,
            "duplicates_handled": self.accounting.duplicates_handled,
            "duplicate_pubacks": self.accounting.duplicate_acks,
            "steady_rate_msg_s": round(self.steady_rate, 1),
            "degraded_rate_msg_s": round(self.degraded_rate, 1),
            "elapsed_s": round(self.elapsed, 1),
            "gaps_s": [round(g, 3) for g in self.gaps],
        }

    def render(self) -> str:
        """The figures as a Markdown table."""
        f = self.figures()
        rows = [
            ("stream-leader SIGKILLs", f"{f['kills']}"),
            (
                "next PubAck after a kill, p50 / p99 / max",
                f"{f['next_puback_p50_s']:.2f} / {f['next_puback_p99_s']:.2f} / "
                f"{f['next_puback_max_s']:.2f} s",
            ),
            ("acked messages", f"{f['acked']}"),
            ("acked but lost", f"{f['lost']}"),
            (
                "duplicates stored / handled",
                f"{f['duplicates_stored']} / {f['duplicates_handled']}",
            ),
            ("acked msg/s, steady", f"{f['steady_rate_msg_s']}"),
            ("acked msg/s, kill to node back", f"{f['degraded_rate_msg_s']}"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"| {'figure'.ljust(width)} | value |", f"| {'-' * width} | --- |"]
        lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
        return "\n".join(lines)


def _bus(cluster: Cluster, prefix: str) -> Bus:
    settings = Settings(
        backend="nats",
        subject_prefix=prefix,
        streams=StreamLimits(replicas=3, max_bytes=64 << 20),
    )
    backend = NatsBackend(settings, nats=NatsSettings(servers=cluster.urls))
    return Bus(settings, backend=backend, entry_points=False)


async def _stream_leader(cluster: Cluster, subject: str) -> int:
    nc = await nats.connect(servers=cluster.urls, connect_timeout=5)
    try:
        js = nc.jetstream(timeout=5.0)
        deadline = time.monotonic() + _RECOVERY
        while time.monotonic() < deadline:
            try:
                info = await js.stream_info(await js.find_stream_name_by_subject(subject))
            except (TimeoutError, nats.errors.Error):
                info = None
            if info is not None and info.cluster is not None and info.cluster.leader:
                return cluster.index_of(info.cluster.leader)
            await asyncio.sleep(0.1)
        raise TimeoutError(f"the stream of {subject!r} had no leader for {_RECOVERY} s")
    finally:
        await nc.close()


async def measure_failover(
    kills: int = 3,
    *,
    rate: float = 50.0,
    progress: Callable[[int, float], None] | None = None,
) -> FailoverReport:
    """SIGKILL the stream leader ``kills`` times under steady publishing; measure each gap.

    Args:
        kills: How many kills (one after the other, the node restarted in between).
        rate: Messages per second sent, one at a time.
        progress: Called with the kill's number (from 1) and its gap, after each kill.

    Returns:
        The report.

    Raises:
        TimeoutError: Publishing did not resume within 60 s of a kill.
    """
    began = time.monotonic()
    report = FailoverReport()
    prefix = "fo" + uuid.uuid4().hex[:8]
    async with Cluster(3, name="failover") as cluster:
        sender, receiver = _bus(cluster, prefix), _bus(cluster, prefix)
        async with receiver, sender:
            traffic = Traffic(sender, receiver, rate=rate)
            await traffic.start()
            try:
                first = await traffic.next_ack_after(time.monotonic(), _RECOVERY)
                steady_from = time.monotonic() - first
                await asyncio.sleep(2 * _SETTLE)
                steady_to = time.monotonic()
                report.steady_rate = traffic.acks_between(steady_from, steady_to) / (
                    steady_to - steady_from
                )
                degraded_acks, degraded_time = 0, 0.0
                for n in range(1, kills + 1):
                    down = await _stream_leader(cluster, traffic.subject)
                    killed = time.monotonic()
                    cluster.kill(down, signal.SIGKILL)
                    gap = await traffic.next_ack_after(killed, _RECOVERY)
                    report.gaps.append(gap)
                    await cluster.arestart(down)
                    back = time.monotonic()
                    degraded_acks += traffic.acks_between(killed, back)
                    degraded_time += back - killed
                    if progress is not None:
                        progress(n, gap)
                    await asyncio.sleep(_SETTLE)
                report.degraded_rate = degraded_acks / degraded_time if degraded_time else 0.0
            finally:
                await traffic.stop()
            report.accounting = await traffic.account(cluster.urls)
    report.elapsed = time.monotonic() - began
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m aclbus_nats.bench.failover``: run `measure_failover`, print the table.

    Returns:
        0, or 1 when an acked message was lost.
    """
    parser = argparse.ArgumentParser(
        prog="python -m aclbus_nats.bench.failover", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--kills", type=int, default=3, help="stream-leader SIGKILLs (3)")
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second (50)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--verbose", action="store_true", help="show the client's disconnect warnings"
    )
    args = parser.parse_args(argv)
    if args.kills < 1 or args.rate <= 0:
        parser.error("--kills must be at least 1 and --rate above 0")
    return run_failover(args.kills, rate=args.rate, json_path=args.json, verbose=args.verbose)


def run_failover(
    kills: int, *, rate: float = 50.0, json_path: Path | None = None, verbose: bool = False
) -> int:
    """Measure, print the table (progress on stderr), write ``json_path`` if given.

    What ``aclbus bench failover`` and ``aclbus cluster failover`` run.

    Returns:
        0, or 1 when an acked message was lost.
    """
    if not verbose:
        # Each kill disconnects clients on purpose: their warnings would bury the figures.
        logging.getLogger("aclbus.nats").setLevel(logging.ERROR)

    def progress(n: int, gap: float) -> None:
        print(f"kill {n}/{kills}: next PubAck after {gap:.2f} s", file=sys.stderr)

    report = asyncio.run(measure_failover(kills, rate=rate, progress=progress))
    print(report.render())
    if json_path is not None:
        json_path.write_text(json.dumps(report.figures(), indent=2) + "\n", encoding="utf-8")
    return 1 if report.accounting.lost else 0


if __name__ == "__main__":
    sys.exit(main())
