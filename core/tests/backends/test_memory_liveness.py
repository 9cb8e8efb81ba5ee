"""A handler that never awaits must not starve the event loop (run in a subprocess so that a
regression fails by timeout instead of hanging the suite)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio
    from aclbus.backend import StreamSpec, SubscriptionSpec
    from aclbus.backends.memory import MemoryBackend

    async def main():
        async with MemoryBackend() as backend:
            await backend.provision(StreamSpec("S", ("s.>",)))
            deliveries = 0

            async def refuse(received):
                nonlocal deliveries
                deliveries += 1
                await received.nack()  # no delay, no max_deliver: redelivered at once, forever

            await backend.subscribe(SubscriptionSpec("s.a"), refuse)
            await backend.publish("s.a", {}, b"x")
            await asyncio.wait_for(asyncio.sleep(0.1), 5)  # timers still fire
            print(deliveries)

    asyncio.run(main())
    """
)


def test_nack_without_delay_does_not_starve_the_loop() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 1  # redelivered, and yet the sleep above ended
