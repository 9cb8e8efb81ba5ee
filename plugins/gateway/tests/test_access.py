"""Who may call: bearer tokens, the policy, and what is never echoed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from aclbus import Bus
from aclbus_gateway import GatewaySettings, create_app

Auth = Callable[[str], dict[str, str]]
SEND = {"performative": "inform", "receiver_id": "worker"}


async def test_no_token_or_an_unknown_one_is_401(client: httpx.AsyncClient, auth: Auth) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic eDp5"}):
        response = await client.post("/communication/send", json=SEND, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"] == "Unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert (await client.get("/communication/statistics")).status_code == 401


async def test_health_and_metrics_need_no_token(client: httpx.AsyncClient) -> None:
    for path in ("/health/live", "/health/ready", "/communication/health", "/metrics"):
        assert (await client.get(path)).status_code == 200, path


async def test_tokens_are_never_echoed_nor_logged(
    client: httpx.AsyncClient, auth: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = auth("alice")["Authorization"].removeprefix("Bearer ")
    texts = []
    for path, body in (
        ("/communication/send", {"performative": "inform"}),
        ("/communication/request", {"receiver_id": "nobody"}),
    ):
        texts.append((await client.post(path, json=body, headers=auth("alice"))).text)
    texts.append((await client.get("/communication/statistics", headers=auth("alice"))).text)
    texts.append((await client.get("/openapi.json")).text)
    texts.append(caplog.text)
    assert [text for text in texts if token in text] == []
    gateway = client._transport.app.state.gateway  # type: ignore[attr-defined]
    assert token not in repr(gateway)


def _policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(
        '[users.gateway]\npassword = "$GATEWAY_PASSWORD"\nagents = ["alice"]\n\n'
        '[agents.alice]\nsend = ["*"]\n',
        encoding="utf-8",
    )
    return path


async def test_the_policy_user_s_agents_only(
    bus: Bus,
    gateway_settings: GatewaySettings,
    auth: Auth,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACLBUS_AUTH__POLICY_FILE", str(_policy(tmp_path)))
    monkeypatch.setenv("ACLBUS_AUTH__USER", "gateway")
    app = create_app(bus=bus, gateway=gateway_settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            ok = await http.post("/communication/send", json=SEND, headers=auth("alice"))
            refused = await http.post("/communication/send", json=SEND, headers=auth("bob"))
            joined = await http.post("/communication/groups/g/join", headers=auth("bob"))
    assert ok.status_code == 200, ok.text
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "Forbidden",
        "detail": "the gateway's policy user may not act as agent 'bob'",
    }
    assert joined.status_code == 403
    assert "bob" not in bus.agents


async def test_a_permission_denied_by_the_bus_is_403(
    client: httpx.AsyncClient, bus: Bus, auth: Auth
) -> None:
    from aclbus import Middleware, PermissionDenied

    class Refuse(Middleware):
        async def publish(self, out, call_next):  # type: ignore[no-untyped-def]
            raise PermissionDenied("publish", out.subject)

    bus.publish_pipeline.compose([Refuse(), *bus.middlewares])
    response = await client.post("/communication/send", json=SEND, headers=auth("alice"))
    assert response.status_code == 403
    assert response.json()["error"] == "PermissionDenied"
