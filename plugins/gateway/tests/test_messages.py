"""Send, broadcast and request through the gateway (ASGI, memory backend)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

from aclbus import ACLMessage, Bus

Auth = Callable[[str], dict[str, str]]


async def _worker(
    bus: Bus, inbox: list[ACLMessage] | None = None, *, reply: str = "inform"
) -> None:
    worker = bus.agent("worker")

    @worker.on("request")
    async def answer(msg: ACLMessage) -> ACLMessage:
        if msg.payload == {"sleep": True}:
            await asyncio.sleep(1)
        return msg.reply(reply, payload={"echo": msg.payload, "from": msg.sender_id})

    @worker.on("inform")
    async def keep(msg: ACLMessage) -> None:
        if inbox is not None:
            inbox.append(msg)

    await worker.start()


async def _until(predicate: Callable[[], bool], seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within the time")


async def test_send_reaches_the_receiver_as_the_caller(
    client: httpx.AsyncClient, bus: Bus, auth: Auth
) -> None:
    inbox: list[ACLMessage] = []
    await _worker(bus, inbox)
    body = {
        "performative": "inform",
        "receiver_id": "worker",
        "content": {"n": 1, "none": None},
        "message_type": "task.result",
        "ontology": "billing",
        "correlation_id": "conv-1",
        "headers": {"x-trace": "abc"},
    }
    response = await client.post("/communication/send", json=body, headers=auth("alice"))
    assert response.status_code == 200, response.text
    sent = response.json()
    assert [a["receiver"] for a in sent["acks"]] == ["worker"]
    await _until(lambda: bool(inbox))
    (msg,) = inbox
    assert msg.message_id == sent["message_id"]
    assert msg.sender_id == "alice"
    assert msg.payload == {"n": 1, "none": None}  # a null inside the payload is kept
    assert (msg.message_type, msg.ontology, msg.correlation_id) == (
        "task.result",
        "billing",
        "conv-1",
    )
    assert msg.headers["x-trace"] == "abc"


async def test_send_to_several_receivers_acks_each(
    client: httpx.AsyncClient, bus: Bus, auth: Auth
) -> None:
    body = {"performative": "inform", "receiver_id": "a", "receivers": ["b", "a", "c"]}
    response = await client.post("/communication/send", json=body, headers=auth("bob"))
    assert response.status_code == 200, response.text
    assert [a["receiver"] for a in response.json()["acks"]] == ["a", "b", "c"]


async def test_the_same_message_id_twice_is_a_duplicate(
    client: httpx.AsyncClient, bus: Bus, auth: Auth
) -> None:
    body = {"performative": "inform", "receiver_id": "worker", "message_id": "retry-1"}
    first = await client.post("/communication/send", json=body, headers=auth("alice"))
    again = await client.post("/communication/send", json=body, headers=auth("alice"))
    assert first.json()["acks"][0]["duplicate"] is False
    assert again.json()["acks"][0]["duplicate"] is True


async def test_broadcast_reaches_every_agent(
    client: httpx.AsyncClient, bus: Bus, auth: Auth
) -> None:
    inbox: list[ACLMessage] = []
    await _worker(bus, inbox)
    body = {"performative": "inform", "payload": "hello all"}
    response = await client.post("/communication/broadcast", json=body, headers=auth("alice"))
    assert response.status_code == 200, response.text
    await _until(lambda: bool(inbox))
    assert inbox[0].payload == "hello all"
    assert inbox[0].sender_id == "alice"


async def test_request_answers_the_reply_envelope(
    client: httpx.AsyncClient, bus: Bus, auth: Auth
) -> None:
    await _worker(bus)
    body = {"receiver_id": "worker", "payload": {"q": 1}, "timeout": 2}
    response = await client.post("/communication/request", json=body, headers=auth("alice"))
    assert response.status_code == 200, response.text
    reply = ACLMessage.model_validate(response.json())
    assert reply.performative == "inform"
    assert reply.sender_id == "worker"
    assert reply.receiver_id == "alice"
    assert reply.payload == {"echo": {"q": 1}, "from": "alice"}


async def test_a_refusal_is_still_a_200_with_the_reply(
    client: httpx.AsyncClient, bus: Bus, auth: Auth
) -> None:
    await _worker(bus, reply="refuse")
    body = {"receiver_id": "worker", "payload": 1}
    response = await client.post("/communication/request", json=body, headers=auth("alice"))
    assert response.status_code == 200
    assert response.json()["performative"] == "refuse"


async def test_request_without_a_responder_is_503_at_once(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    body = {"receiver_id": "nobody", "timeout": 5}
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await client.post("/communication/request", json=body, headers=auth("alice"))
    assert loop.time() - started < 1.0
    assert response.status_code == 503
    assert response.json()["error"] == "NoResponders"


async def test_request_timeout_is_504(client: httpx.AsyncClient, bus: Bus, auth: Auth) -> None:
    await _worker(bus)
    body = {"receiver_id": "worker", "payload": {"sleep": True}, "timeout": 0.2}
    response = await client.post("/communication/request", json=body, headers=auth("alice"))
    assert response.status_code == 504
    assert response.json()["error"] == "RequestTimeout"


async def test_a_timeout_over_the_limit_is_422_naming_the_field(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    body = {"receiver_id": "worker", "timeout": 500}  # max_request_timeout is 5 here
    response = await client.post("/communication/request", json=body, headers=auth("alice"))
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "timeout"]
    assert "MAX_REQUEST_TIMEOUT" in error["msg"]


async def test_acting_as_another_sender_is_403(
    client: httpx.AsyncClient, bus: Bus, auth: Auth
) -> None:
    body = {"performative": "inform", "receiver_id": "worker", "sender_id": "bob"}
    response = await client.post("/communication/send", json=body, headers=auth("alice"))
    assert response.status_code == 403
    assert response.json() == {
        "error": "Forbidden",
        "detail": "the caller acts as 'alice', not as 'bob'",
    }
    body["sender_id"] = "alice"  # naming oneself is fine
    ok = await client.post("/communication/send", json=body, headers=auth("alice"))
    assert ok.status_code == 200
    assert bus.stats.published == 1


async def test_bad_bodies_are_422_with_field_level_detail(
    client: httpx.AsyncClient, bus: Bus, auth: Auth
) -> None:
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        ({"performative": "shout", "receiver_id": "w"}, ["body", "performative"]),
        ({"performative": "inform", "receiver_id": "no spaces"}, ["body", "receiver_id"]),
        ({"performative": "inform"}, ["body"]),  # no receiver
        ({"performative": "inform", "receiver_id": "w", "priority": 12}, ["body", "priority"]),
        ({"performative": "inform", "receiver_id": "w", "colour": 1}, ["body", "colour"]),
        (
            {"performative": "inform", "receiver_id": "w", "headers": {"acl-x": "1"}},
            ["body", "headers"],
        ),
        (
            {"performative": "inform", "receiver_id": "w", "headers": {"Bad": "1"}},
            ["body", "headers"],
        ),
    ]
    for body, loc in cases:
        response = await client.post("/communication/send", json=body, headers=auth("alice"))
        assert response.status_code == 422, (body, response.text)
        payload = response.json()
        assert payload["error"] == "ValidationError"
        assert any(error["loc"][: len(loc)] == loc for error in payload["detail"]), payload
        assert all("input" not in error for error in payload["detail"])  # no echo of the body
    not_json = await client.post(
        "/communication/send",
        content=b"{not json",
        headers={**auth("alice"), "content-type": "application/json"},
    )
    assert not_json.status_code == 422
    assert bus.stats.published == 0
