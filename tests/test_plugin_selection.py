"""``ACLBUS_PLUGINS`` / ``ACLBUS_DISABLE_PLUGINS`` with the workspace's real distributions.

The lists choose middleware plugins; the backend is chosen by ``ACLBUS_BACKEND`` alone, and
its plugin loads whatever the lists say (the documented ``ACLBUS_PLUGINS=retry,dedup`` used to
leave the NATS backend out, and `Bus()` then claimed it was not installed).
"""

from __future__ import annotations

import pytest

from aclbus import ACLMessage, Bus, Performative, PluginError

pytestmark = pytest.mark.usefixtures("isolated")


async def test_the_documented_allow_list_keeps_the_nats_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACLBUS_PLUGINS", "retry,dedup")
    bus = Bus()  # the default backend: nats, an embedded server
    loaded = {p.name for p in bus.plugins.info()}
    assert bus.backend.name == "nats"
    assert {"retry", "dedup", "nats"} <= loaded
    assert "ordering" not in loaded
    async with bus:
        agent = bus.agent("echo")

        @agent.on(Performative.REQUEST)
        async def echo(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload=msg.payload)

        await agent.start()
        request = ACLMessage(performative="request", sender_id="cli", receiver_id="echo", payload=1)
        reply = await bus.request(request, timeout=5)
        assert reply.payload == 1


def test_the_deny_list_cannot_switch_off_the_selected_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACLBUS_DISABLE_PLUGINS", "nats,ordering")
    bus = Bus()
    assert bus.backend.name == "nats"
    assert "ordering" not in {p.name for p in bus.plugins.info()}


def test_a_misspelled_allow_list_entry_lists_the_installed_plugins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACLBUS_PLUGINS", "retry,dedupe")
    with pytest.raises(PluginError) as err:
        Bus()
    text = str(err.value)
    assert "'dedupe', which is not installed" in text
    installed = (
        "auth, dedup, gateway, json, memory, metrics, nats, ordering, retry, signing, tls, tracing"
    )
    assert f"Installed plugins: {installed}" in text
