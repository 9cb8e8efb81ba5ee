"""Bad requests to the webhook routes get a typed, precise answer; the secret stays hidden.

In-process over ASGI on the memory backend (the reference engine): these are about the HTTP
contract, not delivery (``test_webhooks.py`` has that, on nats-server).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from aclbus import Settings
from aclbus.acl import build
from aclbus_gateway import GatewaySettings, create_app
from aclbus_gateway.webhooks import Registration, WebhookFilters, WebhookRequest
from aclbus_gateway.webhooks.delivery import Poster

MINE = {"authorization": "Bearer token-a"}
THEIRS = {"authorization": "Bearer token-b"}
LONG_AGENT = "l" * 100
LONG = {"authorization": "Bearer token-long"}
URL = "http://127.0.0.1:9/hook"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    gateway = GatewaySettings(
        tokens={"a": "token-a", "b": "token-b", LONG_AGENT: "token-long"}, webhooks_per_agent=2
    )
    app = create_app(Settings(backend="memory"), gateway=gateway)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            yield c


def locations(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1/hook", "", "http://"])
async def test_a_url_that_is_no_http_url_is_refused(client: httpx.AsyncClient, url: str) -> None:
    response = await client.post("/communication/handlers", json={"url": url}, headers=MINE)
    assert locations(response) == [["body", "url"]]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"url": URL, "colour": "red"}, ["body", "colour"]),
        ({"url": URL, "performatives": ["shout"]}, ["body", "performatives", 0]),
        ({"url": URL, "message_type": "task..new"}, ["body", "message_type"]),
        ({"url": URL, "topic": "orders.>.eu"}, ["body", "topic"]),
        ({"url": URL, "group": "ops.eu"}, ["body", "group"]),
        ({}, ["body", "url"]),
    ],
)
async def test_bad_filters_are_refused_field_by_field(
    client: httpx.AsyncClient, body: dict[str, Any], where: list[Any]
) -> None:
    response = await client.post("/communication/handlers", json=body, headers=MINE)
    assert locations(response) == [where]


async def test_a_group_too_long_for_the_agents_consumer_name_is_refused(
    client: httpx.AsyncClient,
) -> None:
    # Over the document's 64 characters: the schema refuses it.
    body = {"url": URL, "group": "g" * 65}
    response = await client.post("/communication/handlers", json=body, headers=MINE)
    assert locations(response) == [["body", "group"]]
    # Within them, but a long agent id leaves no room for the group consumer's name.
    body = {"url": URL, "group": "g" * 64}
    response = await client.post("/communication/handlers", json=body, headers=LONG)
    assert locations(response) == [["body", "group"]]
    assert "too long" in response.json()["detail"][0]["msg"]
    assert (await client.get("/communication/handlers", headers=LONG)).json() == []


async def test_ids_owners_and_the_limit(client: httpx.AsyncClient) -> None:
    assert (await client.post("/communication/handlers", json={"url": URL})).status_code == 401
    created = await client.post(
        "/communication/handlers", json={"url": URL, "message_type": "task.*"}, headers=MINE
    )
    assert created.status_code == 201
    webhook = created.json()
    assert webhook["secret"].startswith("whsec_")
    assert webhook["agent"] == "a"

    listed = (await client.get("/communication/handlers", headers=MINE)).json()
    assert [w["id"] for w in listed] == [webhook["id"]]
    assert "secret" not in listed[0]
    assert (await client.get("/communication/handlers", headers=THEIRS)).json() == []

    path = f"/communication/handlers/{webhook['id']}"
    assert locations(await client.delete("/communication/handlers/nope", headers=MINE)) == [
        ["path", "webhook_id"]
    ]
    unknown = await client.delete(f"/communication/handlers/wh_{'0' * 24}", headers=MINE)
    assert unknown.status_code == 404
    assert (await client.delete(path, headers=THEIRS)).status_code == 403

    await client.post("/communication/handlers", json={"url": URL}, headers=MINE)
    third = await client.post("/communication/handlers", json={"url": URL}, headers=MINE)
    assert third.status_code == 409
    assert "WEBHOOKS_PER_AGENT" in third.json()["detail"]

    assert (await client.delete(path, headers=MINE)).status_code == 204
    assert (await client.delete(path, headers=MINE)).status_code == 404
    assert len((await client.get("/communication/handlers", headers=MINE)).json()) == 1


async def test_the_secret_is_in_no_log_and_no_repr(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        created = await client.post("/communication/handlers", json={"url": URL}, headers=MINE)
    secret = created.json()["secret"]
    assert secret not in caplog.text
    registration = Registration.make("a", WebhookRequest(url=URL))  # type: ignore[arg-type]
    assert registration.secret not in repr(registration)
    assert registration.secret not in str(registration)
    assert URL not in repr(registration)


@pytest.mark.parametrize(
    ("filters", "fields", "matches"),
    [
        ({}, {}, True),
        ({"performatives": ["inform"]}, {"performative": "request"}, False),
        ({"message_type": "task.*"}, {"message_type": "task.new"}, True),
        ({"message_type": "task.*"}, {"message_type": "task.new.eu"}, False),
        ({"message_type": "task.>"}, {"message_type": "task.new.eu"}, True),
        ({"message_type": "task.*"}, {}, False),
        ({"topic": "orders.*"}, {"topic": "orders.eu"}, True),
        ({"topic": "orders.*"}, {}, False),
    ],
)
def test_filters_match_like_agent_on(
    filters: dict[str, Any], fields: dict[str, Any], matches: bool
) -> None:
    msg = build(**{"performative": "inform", "sender_id": "s", **fields})
    assert WebhookFilters(**filters).matches(msg, None) is matches


async def test_only_allowed_hosts_can_be_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SSRF guard: with an allow-list, a URL of any other host (the gateway's own network
    # included) is refused at registration, and one registered earlier is not POSTed to.
    monkeypatch.setenv("ACLBUS_GATEWAY__WEBHOOK_HOSTS", "hooks.example.com,*.svc.test")
    gateway = GatewaySettings(tokens={"a": "token-a"})  # type: ignore[dict-item]
    assert gateway.webhook_hosts == ["hooks.example.com", "*.svc.test"]
    app = create_app(Settings(backend="memory"), gateway=gateway)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            for refused in (
                URL,
                "http://169.254.169.254/latest",
                "https://hooks.example.com.evil/",
            ):
                response = await client.post(
                    "/communication/handlers", json={"url": refused}, headers=MINE
                )
                assert locations(response) == [["body", "url"]], refused
                assert "WEBHOOK_HOSTS" in response.json()["detail"][0]["msg"]
            for allowed in ("https://HOOKS.example.com/in", "http://receiver.svc.test:8080/x"):
                response = await client.post(
                    "/communication/handlers", json={"url": allowed}, headers=MINE
                )
                assert response.status_code == 201, response.text

    poster = Poster(gateway)
    await poster.start()
    try:
        earlier = Registration.make("a", WebhookRequest(url=URL))  # type: ignore[arg-type]
        outcome = await poster.post(earlier, b"{}", delivery_id="d1", attempt=1)
    finally:
        await poster.stop()
    assert not outcome.delivered
    assert outcome.problem is not None
    assert "WEBHOOK_HOSTS" in outcome.problem
