"""Webhooks on a real nats-server, a real uvicorn and a real receiver process.

The receiver (``webhook_receiver.py``) is SIGKILLed and started again while messages flow:
every message gets there (at least once; exactly once by its delivery id), every POST is
signed, no attempt goes past the budget, and a message whose receiver stays down past the
budget ends in the DLQ with the reason, and is not POSTed after that.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aclbus import Bus
from aclbus.acl import build
from aclbus.errors import RequestTimeout
from aclbus_gateway import GatewaySettings
from aclbus_nats.testing import delete_streams

from .hooks_support import Receiver, free_port, nats_bus, nats_settings, served_gateway, wait_for

AGENT = "hooked"
TOKEN = "token-of-hooked"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def prefix(nats_url: str) -> AsyncIterator[str]:
    """A subject prefix of the test's own; its streams and buckets are deleted after it."""
    name = f"wh{uuid.uuid4().hex[:10]}"
    yield name
    await delete_streams(nats_url, name)


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[Receiver]:
    """A webhook receiver process (started), killed after the test."""
    hook = Receiver(free_port(), tmp_path / "received.jsonl")
    await hook.start()
    yield hook
    hook.kill()


def gateway_settings(**overrides: Any) -> GatewaySettings:
    return GatewaySettings(tokens={AGENT: TOKEN}, webhook_timeout=2.0, **overrides)


def signed_ok(record: dict[str, Any], secret: str) -> bool:
    """The receiver's check, written from the documented scheme (not the gateway's code)."""
    headers = record["headers"]
    signed = f"{headers['aclbus-timestamp']}.{record['body']}".encode()
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["aclbus-signature"])


async def register(base: str, **body: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, headers=AUTH) as client:
        response = await client.post("/communication/handlers", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def send(bus: Bus, n: int) -> str:
    msg = build(performative="inform", sender_id="sender", receiver_id=AGENT, payload={"n": n})
    await bus.send(msg)
    return msg.message_id


async def test_receiver_killed_and_restarted_mid_flow_loses_nothing(
    nats_url: str, prefix: str, receiver: Receiver
) -> None:
    # A budget of about 12 s: a receiver slow to come back on a loaded machine is still in it.
    settings = nats_settings(prefix, max_deliver=20)
    gateway = gateway_settings(webhook_attempts=15, webhook_backoff=0.2, webhook_backoff_max=1.0)
    async with served_gateway(nats_bus(nats_url, settings), gateway) as base:
        created = await register(base, url=receiver.url)
        secret = created["secret"]
        async with nats_bus(nats_url, settings) as sender:
            sent = [await send(sender, n) for n in range(10)]
            await wait_for(lambda: len(receiver.records()) >= 5, timeout=10, what="5 POSTs")
            receiver.kill()
            sent += [await send(sender, n) for n in range(10, 20)]
            await asyncio.sleep(1.0)  # attempts fail meanwhile, within the budget
            await receiver.start()
            sent += [await send(sender, n) for n in range(20, 30)]

            def all_there() -> bool:
                ids = {r["headers"]["aclbus-delivery-id"] for r in receiver.records()}
                return len(ids) == len(sent)

            await wait_for(all_there, timeout=20, what="every message at the receiver")

    records = receiver.records()
    assert all(signed_ok(r, secret) for r in records)
    by_delivery: dict[str, set[str]] = {}
    for record in records:
        envelope = json.loads(record["body"])
        assert envelope["receiver_id"] == AGENT
        assert record["headers"]["aclbus-webhook-id"] == created["id"]
        by_delivery.setdefault(record["headers"]["aclbus-delivery-id"], set()).add(
            envelope["message_id"]
        )
    # Deduplicated by delivery id, each message exactly once, and only the ones sent.
    assert all(len(ids) == 1 for ids in by_delivery.values())
    assert sorted(i for ids in by_delivery.values() for i in ids) == sorted(sent)
    attempts = [int(r["headers"]["aclbus-delivery-attempt"]) for r in records]
    assert max(attempts) <= 15
    assert max(attempts) >= 2  # the kill made some attempts fail: they were retried


async def test_receiver_down_past_the_budget_dead_letters(
    nats_url: str, prefix: str, receiver: Receiver
) -> None:
    settings = nats_settings(prefix)
    gateway = gateway_settings(webhook_attempts=3, webhook_backoff=0.1, webhook_backoff_max=0.2)
    async with served_gateway(nats_bus(nats_url, settings), gateway) as base:
        created = await register(base, url=receiver.url)
        receiver.kill()
        async with nats_bus(nats_url, settings) as sender:
            message_id = await send(sender, 1)
            letters = await wait_for(
                lambda: sender.dead_letters.list(origin=AGENT), timeout=15, what="a dead letter"
            )
            await receiver.start()
            await asyncio.sleep(1.5)  # past any backoff: nothing may come any more

    (letter,) = letters
    assert letter.message_id == message_id
    assert letter.reason == "attempts-exhausted"
    assert letter.error_type == "WebhookUndeliverable"
    assert letter.attempts == 3
    assert letter.error is not None
    assert "3 attempts failed" in letter.error
    assert created["id"] in letter.error
    assert created["id"] in (letter.handler or "")
    assert str(receiver.port) not in letter.error  # the URL is not in the dead letter
    assert receiver.records() == []


async def test_registrations_survive_a_gateway_restart(
    nats_url: str, prefix: str, receiver: Receiver
) -> None:
    settings = nats_settings(prefix)
    gateway = gateway_settings(webhook_backoff=0.1)
    async with served_gateway(nats_bus(nats_url, settings), gateway) as base:
        on_topic = await register(base, url=receiver.url, topic="orders.*")
        on_group = await register(base, url=receiver.url, group="ops")
        informs = await register(base, url=receiver.url, performatives=["inform"])
    async with nats_bus(nats_url, settings) as sender:
        # The gateway is down: its agent's inbox and topic consumer keep these for it.
        away = await send(sender, 1)
        topic_msg = build(performative="inform", sender_id="sender", payload={"t": 1})
        await sender.publish(topic_msg, topic="orders.eu")
        async with served_gateway(nats_bus(nats_url, settings), gateway) as base:
            async with httpx.AsyncClient(base_url=base, headers=AUTH) as client:
                listed = (await client.get("/communication/handlers")).json()
            group_msg = build(performative="request", sender_id="sender", payload={"g": 1})
            await sender.multicast("ops", group_msg)
            expected = {
                away: {informs["id"]},
                topic_msg.message_id: {on_topic["id"], informs["id"]},
                group_msg.message_id: {on_group["id"]},
            }

            def hooks_of() -> dict[str, set[str]]:
                got: dict[str, set[str]] = {}
                for record in receiver.records():
                    message_id = json.loads(record["body"])["message_id"]
                    got.setdefault(message_id, set()).add(record["headers"]["aclbus-webhook-id"])
                return got

            await wait_for(
                lambda: hooks_of() == expected, timeout=15, what="the POSTs after the restart"
            )

    assert [w["id"] for w in listed] == [on_topic["id"], on_group["id"], informs["id"]]
    assert all("secret" not in w for w in listed)
    assert listed[0]["topic"] == "orders.*"
    assert listed[2]["performatives"] == ["inform"]
    secrets = {w["id"]: w["secret"] for w in (on_topic, on_group, informs)}
    for record in receiver.records():  # the secrets survived the restart too
        assert signed_ok(record, secrets[record["headers"]["aclbus-webhook-id"]])


async def test_a_request_is_posted_once_and_gets_no_reply(
    nats_url: str, prefix: str, receiver: Receiver
) -> None:
    settings = nats_settings(prefix)
    async with served_gateway(nats_bus(nats_url, settings), gateway_settings()) as base:
        created = await register(base, url=receiver.url, performatives=["request"])
        async with nats_bus(nats_url, settings) as sender:
            ask = build(performative="request", sender_id="sender", receiver_id=AGENT)
            with pytest.raises(RequestTimeout):
                await sender.request(ask, timeout=1.0)
            await send(sender, 1)  # an inform: not for this webhook
            await asyncio.sleep(0.3)
    (record,) = receiver.records()
    assert json.loads(record["body"])["message_id"] == ask.message_id
    assert record["headers"]["aclbus-delivery-attempt"] == "1"
    assert signed_ok(record, created["secret"])
