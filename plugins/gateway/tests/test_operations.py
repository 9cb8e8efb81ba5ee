"""Groups, statistics, metrics, health, documents, the body limit (ASGI, memory backend)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from aclbus import ACLMessage, Agent, Bus, Performative, Settings
from aclbus_gateway import Gateway, GatewaySettings, create_app
from aclbus_gateway.bus_metrics import gateway_bus
from aclbus_metrics import MetricsMiddleware

Auth = Callable[[str], dict[str, str]]


async def test_join_hosts_the_caller_s_agent_and_multicasts_reach_it(
    client: httpx.AsyncClient, bus: Bus, auth: Auth
) -> None:
    got: list[ACLMessage] = []

    async def handle(msg: ACLMessage) -> None:
        got.append(msg)

    async def keep(agent: Agent) -> None:  # what a route module's AgentSetup does
        agent.on(Performative.INFORM)(handle)

    gateway = client._transport.app.state.gateway  # type: ignore[attr-defined]
    # First: a hosted agent's first matching handler takes a message, and the webhooks'
    # catch-all handler is set up on every hosted agent already.
    gateway.agent_setups.insert(0, keep)
    joined = await client.post("/communication/groups/team/join", headers=auth("alice"))
    again = await client.post("/communication/groups/team/join", headers=auth("alice"))
    assert joined.status_code == again.status_code == 200
    assert joined.json() == {"agent_id": "alice", "group": "team", "member": True}
    assert await bus.group_members("team") == ["alice"]
    assert gateway.hosted == ("alice",)

    await bus.multicast("team", ACLMessage(performative="inform", sender_id="boss"))
    for _ in range(200):
        if got:
            break
        await asyncio.sleep(0.01)
    assert [m.sender_id for m in got] == ["boss"]

    left = await client.delete("/communication/groups/team/leave", headers=auth("alice"))
    assert left.json() == {"agent_id": "alice", "group": "team", "member": False}
    assert await bus.group_members("team") == []
    not_member = await client.delete("/communication/groups/team/leave", headers=auth("alice"))
    assert not_member.status_code == 404
    assert not_member.json()["error"] == "NotFound"


async def test_a_bad_group_name_is_422(client: httpx.AsyncClient, auth: Auth) -> None:
    for name in ("a.b", "sp%20ace", "x" * 129):
        response = await client.post(f"/communication/groups/{name}/join", headers=auth("alice"))
        assert response.status_code == 422, name
        assert response.json()["detail"][0]["loc"] == ["path", "group"]


async def test_statistics_hold_the_bus_and_the_gateway_counters(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    body = {"performative": "inform", "receiver_id": "w"}
    await client.post("/communication/send", json=body, headers=auth("alice"))
    await client.post("/communication/send", json={"performative": "x"}, headers=auth("alice"))
    await client.get("/no/such/path/1")
    await client.get("/no/such/path/2")
    await client.get("/communication/send")  # a 405
    await client.request("BREW", "/communication/send")
    stats = (await client.get("/communication/statistics", headers=auth("bob"))).json()
    assert stats["bus"]["published"] == 1
    requests = stats["gateway"]["requests"]
    assert requests["POST /communication/send"] == {"200": 1, "422": 1}
    assert requests["GET (no route)"] == {"404": 2}  # one label for every unknown path
    assert requests["GET /communication/send"] == {"405": 1}
    assert requests["OTHER /communication/send"] == {"405": 1}  # no label per made-up method


async def test_metrics_are_the_bus_prometheus_text(client: httpx.AsyncClient, auth: Auth) -> None:
    body = {"performative": "inform", "receiver_id": "w"}
    await client.post("/communication/send", json=body, headers=auth("alice"))
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert (
        'aclbus_messages_sent_total{backend="memory",message_type="",performative="inform"} 1.0'
        in response.text
    )


async def test_metrics_on_once_with_or_without_the_plugin_s_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for enabled in ("false", "true"):
        monkeypatch.setenv("ACLBUS_METRICS__ENABLED", enabled)
        async with gateway_bus(Settings(backend="memory")) as bus:
            kinds = [type(m) for m in bus.middlewares]
            assert kinds.count(MetricsMiddleware) == 1, (enabled, kinds)
    monkeypatch.setenv("ACLBUS_METRICS__ENABLED", "false")
    async with gateway_bus(Settings(backend="memory"), metrics=False) as bus:
        assert MetricsMiddleware not in [type(m) for m in bus.middlewares]


@pytest.fixture
async def plain_bus() -> AsyncIterator[Bus]:
    async with Bus(Settings(backend="memory")) as started:  # no metrics plugin on it
        yield started


async def test_metrics_off_is_a_404_with_the_reason(plain_bus: Bus) -> None:
    app = create_app(bus=plain_bus, gateway=GatewaySettings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            response = await http.get("/metrics")
    assert response.status_code == 404
    assert "ACLBUS_METRICS__ENABLED" in response.json()["detail"]


async def test_health(client: httpx.AsyncClient, bus: Bus) -> None:
    assert (await client.get("/health/live")).json() == {"status": "live"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    await bus.stop()
    not_ready = await client.get("/health/ready")
    assert not_ready.status_code == 503
    assert not_ready.json() == {"error": "NotReady", "detail": "the gateway's bus is not started"}
    health = (await client.get("/communication/health")).json()
    assert (health["status"], health["reason"]) == (
        "unavailable",
        "the gateway's bus is not started",
    )
    assert (await client.get("/health/live")).status_code == 200


async def test_a_send_on_a_stopped_bus_is_503(
    client: httpx.AsyncClient, bus: Bus, auth: Auth
) -> None:
    await bus.stop()
    body = {"performative": "inform", "receiver_id": "w"}
    response = await client.post("/communication/send", json=body, headers=auth("alice"))
    assert response.status_code == 503
    assert response.json()["error"] == "BackendClosed"


async def test_documents(client: httpx.AsyncClient) -> None:
    openapi = (await client.get("/openapi.json")).json()
    assert "/communication/send" in openapi["paths"]
    asyncapi = await client.get("/asyncapi.json")
    assert asyncapi.status_code == 404  # memory has no FastStream broker
    assert "no AsyncAPI document on backend 'memory'" in asyncapi.json()["detail"]


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(
        tokens={"alice": "alice-token-0123456789", "bob": "bob-token-0123456789"},  # type: ignore[dict-item]
        max_body_bytes=2000,
    )


async def test_an_oversized_body_is_413_before_parsing(
    client: httpx.AsyncClient, bus: Bus, auth: Auth
) -> None:
    big = {"performative": "inform", "receiver_id": "w", "payload": "x" * 5000}
    declared = await client.post("/communication/send", json=big, headers=auth("alice"))
    assert declared.status_code == 413
    assert declared.json()["error"] == "PayloadTooLarge"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield b'{"performative": "inform", "receiver_id": "w", "payload": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    chunked = await client.post("/communication/send", content=chunks(), headers=auth("alice"))
    assert chunked.status_code == 413
    assert bus.stats.published == 0
    small = {"performative": "inform", "receiver_id": "w", "payload": "x" * 100}
    assert (
        await client.post("/communication/send", json=small, headers=auth("alice"))
    ).status_code == 200


async def test_a_message_over_the_bus_limit_is_413(auth: Auth) -> None:
    async with gateway_bus(Settings(backend="memory", max_message_bytes=1500)) as bus:
        app = create_app(
            bus=bus,
            gateway=GatewaySettings(
                tokens={"alice": "alice-token-0123456789"}, max_body_bytes=10_000
            ),  # type: ignore[dict-item]
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                body = {"performative": "inform", "receiver_id": "w", "payload": "x" * 3000}
                response = await http.post("/communication/send", json=body, headers=auth("alice"))
    assert response.status_code == 413
    assert response.json()["error"] == "MessageTooLarge"


async def test_services_run_while_the_gateway_runs(
    bus: Bus, gateway_settings: GatewaySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib

    import aclbus_gateway.app

    events: list[str] = []

    def service(name: str) -> Callable[[Gateway], contextlib.AbstractAsyncContextManager[None]]:
        @contextlib.asynccontextmanager
        async def run(gateway: Gateway) -> AsyncIterator[None]:
            assert gateway.bus.started  # made on the started bus
            events.append(f"start {name}")
            yield
            events.append(f"stop {name} (bus started: {gateway.bus.started})")

        return run

    monkeypatch.setattr(aclbus_gateway.app, "SERVICES", (service("a"), service("b")))
    app = create_app(bus=bus, gateway=gateway_settings)
    async with app.router.lifespan_context(app):
        assert events == ["start a", "start b"]
    assert events[2:] == ["stop b (bus started: True)", "stop a (bus started: True)"]
