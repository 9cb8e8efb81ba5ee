"""Signed envelopes: bob handles what alice signed, and refuses what only claims to be hers.

    python examples/signed_agents.py

Makes an Ed25519 key for each agent (seed files readable by their owner only), pins the public
keys in ``keys.toml`` and turns signing on in ``aclbus.toml``, all in the working directory.
Then alice's signed message reaches bob's handler, while a message sent straight to the
backend with ``ce-source: alice`` and no signature (what any other client of the broker could
send) is dead-lettered as ``bad-signature`` without reaching him. docs/security.md, "Signed
envelopes", is the guide; the keys could as well be NKey user seeds (``SU...``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aclbus import ACLMessage, Bus, wire
from aclbus_signing import PrivateKey, stats

AGENTS = ("alice", "bob")


def write_keys() -> None:
    """A seed file per agent (mode 0600), the pinned public keys, and the [signing] table."""
    pinned = []
    for agent in AGENTS:
        key = PrivateKey.generate()
        seed = Path(f"{agent}.seed")
        seed.touch(mode=0o600)
        seed.write_text(key.seed_text() + "\n")
        pinned.append(f'{agent} = ["{key.key_id}"]')
    Path("keys.toml").write_text("\n".join(pinned) + "\n")
    Path("aclbus.toml").write_text(
        "[signing]\n"
        'mode = "require"\n'
        'keys_file = "keys.toml"\n'
        "[signing.agent_key_files]\n" + "".join(f'{a} = "{a}.seed"\n' for a in AGENTS)
    )


async def main() -> None:
    write_keys()
    async with Bus() as bus:  # ACLBUS_BACKEND picks the backend; aclbus.toml the signing
        got: list[ACLMessage] = []
        bob = bus.agent("bob")

        @bob.on("inform")
        async def handle(msg: ACLMessage) -> None:
            got.append(msg)

        await bob.start()
        signed = ACLMessage(
            performative="inform",
            sender_id="alice",  # signed with alice.seed, as this bus holds alice's key
            receiver_id="bob",
            payload={"text": "signed by alice"},
        )
        await bus.send(signed)

        # What another client could put on the wire: alice's name, no signature.
        forged = ACLMessage(
            performative="inform",
            sender_id="alice",
            receiver_id="bob",
            payload={"text": "pay mallory"},
        )
        headers, body = wire.encode(forged, bus.codecs)
        await bus.backend.publish(bus.subjects.inbox("bob"), headers, body)

        for _ in range(500):  # at most 5 s
            letters = await bus.dead_letters.list(origin="bob")
            if got and letters:
                break
            await asyncio.sleep(0.01)
        print(f"bob handled: {[m.payload['text'] for m in got]}")
        for letter in letters:
            print(f"dead-lettered: {letter.reason}: {letter.error}")
        assert [m.payload["text"] for m in got] == ["signed by alice"]
        assert [letter.reason for letter in letters] == ["bad-signature"]
        assert stats(bus).refused == 1


if __name__ == "__main__":
    asyncio.run(main())
