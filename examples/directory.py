"""Directory, presence and shared state: agents find each other and keep a counter together.

    python examples/directory.py

Three agents, each on a bus of its own (as if in separate processes), register their skills
in the directory. A coordinator searches for a translator and finds it. Two workers count
jobs in a shared map with compare-and-set, so no increment is lost. Then one worker's
process dies without a clean stop: within 3 heartbeat intervals it is unavailable, while a
worker that stops cleanly is deregistered at once. The script checks each step and exits
non-zero if one is wrong.

With no ``ACLBUS_NATS__SERVERS`` set, aclbus starts a nats-server of its own for the run.
"""

from __future__ import annotations

import asyncio
import sys
import time

from aclbus import Bus
from aclbus.directory import AgentDescription

HEARTBEAT = 0.2  # seconds: short, so the dead agent is noticed quickly in this demo


def check(condition: bool, what: str) -> None:
    """Print a step and stop the script with an error if it did not hold."""
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        sys.exit(1)


async def main() -> None:
    async with Bus() as coordinator:
        translator, counter_a, counter_b = (coordinator.sibling() for _ in range(3))
        for bus in (translator, counter_a, counter_b):
            await bus.start()

        await translator.directory.register(
            AgentDescription(
                agent_id="translator",
                skills=("translate", "summarise"),
                protocols=("fipa-request",),
                version="1.2.0",
            ),
            heartbeat=HEARTBEAT,
        )
        for bus, name in ((counter_a, "counter-a"), (counter_b, "counter-b")):
            await bus.directory.register(
                AgentDescription(agent_id=name, skills=("count",), protocols=("fipa-request",)),
                heartbeat=HEARTBEAT,
            )

        found = await coordinator.directory.search(skill="translate")
        print("search skill=translate:", [d.agent_id for d in found])
        check([d.agent_id for d in found] == ["translator"], "the coordinator finds the translator")
        counters = await coordinator.directory.search(skill="count", protocol="fipa-request")
        check(
            [d.agent_id for d in counters] == ["counter-a", "counter-b"],
            "both counters are found by skill and protocol",
        )

        # Two agents increment one shared counter at the same time: compare-and-set retries.
        async def count(bus: Bus, times: int) -> None:
            jobs = bus.shared_map("jobs")
            for _ in range(times):
                await jobs.modify("done", lambda n: (n or 0) + 1, attempts=100)

        await asyncio.gather(count(counter_a, 25), count(counter_b, 25))
        total = await coordinator.shared_map("jobs").get("done")
        print("shared counter after 2 x 25 increments:", total)
        check(total == 50, "no increment was lost")

        # counter-b's process dies: its connection drops, nobody deregisters it.
        await counter_b.backend.close()
        died = time.monotonic()
        while await coordinator.directory.is_available("counter-b"):
            if time.monotonic() - died > 5.0:
                check(False, "counter-b is noticed as dead within 5 s")
            await asyncio.sleep(HEARTBEAT / 4)
        took = time.monotonic() - died
        print(f"counter-b unavailable {took:.2f} s after it died")
        # 3 intervals after its last beat, which was at most one interval before it died.
        check(took < 3 * HEARTBEAT + 1.0, "counter-b is unavailable within 3 heartbeat intervals")
        check(
            await coordinator.directory.search(skill="count")
            == [await coordinator.directory.get("counter-a")],
            "a search now finds only counter-a",
        )

        # counter-a stops cleanly: deregistered at once, no waiting.
        await counter_a.stop()
        check(await coordinator.directory.get("counter-a") is None, "counter-a deregistered")
        check(
            await coordinator.directory.available() == ["translator"],
            "only the translator is available",
        )

        await counter_b.stop()  # lets go of what is left of the dead bus
        await translator.stop()


if __name__ == "__main__":
    asyncio.run(main())
