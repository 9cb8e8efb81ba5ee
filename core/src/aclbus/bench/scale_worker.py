"""A worker process of the ``scale`` scenario, and the scenario's handle on one.

The scenario spreads a step's agents over worker processes on one broker. Each worker runs
``python -m aclbus.bench.scale_worker '<json>'``: it opens a bus with the settings given (the
rest from its environment, as the parent's), starts its `AgentSet` and answers the parent,
one JSON object a line:

- at start, ``{"started": n, "seconds": s, "rss_kb": k, "phases": {...}}`` (or
  ``{"error": "..."}``, and exit 1);
- to ``count``: ``{"received": n, "reached": r, "last": t}`` (messages handled, agents that
  handled one, and the last one's `time.monotonic`: one clock on a host);
- to ``stop``: ``{"stopped": s, "heartbeat_outages": h, "failed_deregisters": d}``, then
  it exits. It also exits when its stdin closes, so a
  worker never outlives its parent's pipe; the parent kills it by PID if it does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from aclbus.bench.errors import BenchError
from aclbus.bench.scale_agents import AgentSet, Started, agent_ids
from aclbus.bus import Bus
from aclbus.settings import Settings

__all__ = ["WorkerProcess", "main"]

_ANSWER = 30.0
"""Seconds a worker may take to answer ``count``."""


async def _serve(spec: dict[str, Any]) -> int:
    settings = Settings(**spec["settings"])
    bus = Bus(settings)
    async with bus:
        agents = AgentSet(bus, agent_ids(spec["first"], spec["count"]), spec["group"])
        try:
            started = await agents.start()
        except Exception as exc:
            _say({"error": f"{type(exc).__name__}: {exc}"})
            return 1
        _say(
            {
                "started": started.agents,
                "seconds": started.seconds,
                "rss_kb": started.rss_kb,
                "phases": started.phases,
            }
        )
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            command = line.strip()
            if command == "count":
                _say(
                    {
                        "received": agents.received,
                        "reached": agents.reached,
                        "last": agents.last_arrival,
                    }
                )
            elif command == "stop":
                stopped = await agents.stop()
                _say(
                    {
                        "stopped": stopped,
                        "heartbeat_outages": agents.heartbeat_outages,
                        "failed_deregisters": agents.failed_deregisters,
                    }
                )
                return 0
            elif not line:  # the parent is gone
                return 0


def _say(answer: dict[str, Any]) -> None:
    print(json.dumps(answer), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m aclbus.bench.scale_worker '<json>'``: serve one worker's agents.

    Returns:
        0, or 1 when the agents could not start.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    return asyncio.run(_serve(json.loads(args[0])))


class WorkerProcess:
    """The scenario's end of one worker: started, asked and stopped over its pipes.

    Args:
        settings: What the worker's bus takes from the parent's settings (prefix, data dir,
            plugins), as keyword arguments of `Settings`.
        first: The id number of its first agent.
        count: Its agents.
        group: The group they join.
    """

    def __init__(self, settings: dict[str, Any], first: int, count: int, group: str) -> None:
        self._spec = {"settings": settings, "first": first, "count": count, "group": group}
        self._proc: asyncio.subprocess.Process | None = None

    async def spawn(self) -> None:
        """Start the process (its agents start at once)."""
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aclbus.bench.scale_worker",
            json.dumps(self._spec),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=os.environ.copy(),
        )

    def _process(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise BenchError("a scale worker was asked before it was spawned")
        return self._proc

    async def _answer(self, timeout: float) -> dict[str, Any]:
        proc = self._process()
        if proc.stdout is None:
            raise BenchError("a scale worker has no pipe to answer on")
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        except TimeoutError:
            raise BenchError(f"a scale worker did not answer within {timeout:g} s") from None
        if not line:
            raise BenchError(f"a scale worker exited (code {await proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise BenchError(f"a scale worker's agents did not start: {answer['error']}")
        return answer

    async def _ask(self, command: str, timeout: float) -> dict[str, Any]:
        stdin = self._process().stdin
        if stdin is None:
            raise BenchError("a scale worker has no pipe to ask on")
        stdin.write(command.encode() + b"\n")
        await stdin.drain()
        return await self._answer(timeout)

    async def started(self, timeout: float) -> Started:
        """Wait until its agents are started; what it took.

        Raises:
            BenchError: They did not start (the worker's error), or not in time.
        """
        answer = await self._answer(timeout)
        return Started(
            int(answer["started"]),
            float(answer["seconds"]),
            float(answer["rss_kb"]),
            {k: float(v) for k, v in answer["phases"].items()},
        )

    async def received(self) -> tuple[int, int, float]:
        """Messages its agents handled, agents that handled one, the last one's time."""
        answer = await self._ask("count", _ANSWER)
        return int(answer["received"]), int(answer["reached"]), float(answer["last"])

    async def stop(self, timeout: float) -> tuple[float, int, int]:
        """Stop its agents and the process.

        Returns:
            The seconds the agents took to stop, their heartbeat outages, and their failed
            deregistrations (`AgentSet`).
        """
        answer = await self._ask("stop", timeout)
        await self.kill()
        return (
            float(answer["stopped"]),
            int(answer["heartbeat_outages"]),
            int(answer["failed_deregisters"]),
        )

    async def kill(self) -> None:
        """End the process if it still runs (by its PID), and reap it. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


if __name__ == "__main__":
    sys.exit(main())
