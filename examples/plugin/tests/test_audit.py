"""The example plugin's own tests, run by the workspace's tests/test_third_party_plugin.py."""

from __future__ import annotations

import logging

import pytest

import aclbus_audit
from aclbus import ACLMessage, Bus, Performative, Settings
from aclbus.testing import Collector


async def test_it_logs_the_performatives_it_is_told_to(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ACLBUS_AUDIT__PERFORMATIVES", "request")
    got: Collector[ACLMessage] = Collector()
    bus = Bus(Settings(backend="memory"), plugins=[aclbus_audit], entry_points=False)
    with caplog.at_level(logging.INFO, logger="aclbus.audit"):
        async with bus:

            @bus.agent("worker").on()
            async def take(msg: ACLMessage) -> None:
                got.add(msg)

            await bus.agent("worker").start()
            for act in (Performative.REQUEST, Performative.INFORM):
                await bus.send(ACLMessage(performative=act, sender_id="cli", receiver_id="worker"))
            await got.wait_for(2)
    lines = [r.getMessage() for r in caplog.records if r.name == "aclbus.audit"]
    assert len(lines) == 1
    assert lines[0].startswith("audit: worker got request ")
    assert lines[0].endswith(" from cli: handled")
