"""FIPA Request: ask a worker to do something; it agrees, works, and informs the result.

    python examples/request.py

Also shows a refusal (the worker declines jobs it cannot do) and a cancelled request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aclbus import ACLMessage, Bus
from aclbus.protocols import Refused, Request, RequestResponder, request

bus = Bus()
worker = bus.agent("worker")


def decide(msg: ACLMessage) -> None:
    """Refuse what the worker cannot do, before agreeing."""
    if msg.payload.get("job") not in ("resize", "sleep"):
        raise Refused(f"cannot {msg.payload.get('job')!r}")


async def perform(msg: ACLMessage) -> dict[str, Any]:
    """Do the job (slowly, for "sleep")."""
    if msg.payload["job"] == "sleep":
        await asyncio.sleep(30)
    return {"width": msg.payload["width"] // 2}


RequestResponder(worker, perform, decide=decide, agree=True, timeout=60.0)


async def main() -> None:
    async with bus:
        client = bus.agent("client")

        outcome = await request(client, "worker", {"job": "resize", "width": 640}, deadline=2.0)
        print(f"resize: agreed={outcome.agreed}, result={outcome.payload}")
        assert outcome.agreed
        assert outcome.payload == {"width": 320}

        reason = None
        try:
            await request(client, "worker", {"job": "fly"}, deadline=2.0)
        except Refused as refused:
            print(f"fly: refused by {refused.peer}: {refused.reason}")
            reason = refused.reason
        assert reason == "cannot 'fly'", "the worker should have refused to fly"

        long_job = Request(client, "worker", {"job": "sleep", "width": 1}, deadline=2.0)
        await long_job.start()
        for _ in range(200):  # until the worker has agreed (at most 2 s)
            if long_job.state == "agreed":
                break
            await asyncio.sleep(0.01)
        confirmed = await long_job.cancel(deadline=2.0)
        print(f"sleep: agreed, then cancelled (confirmed by the worker: {confirmed})")
        assert confirmed


if __name__ == "__main__":
    asyncio.run(main())
