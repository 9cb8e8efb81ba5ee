"""FIPA Query on a bus: query-if and query-ref, refuse, failure, the deadline."""

from __future__ import annotations

from typing import Any

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.bus import Bus
from aclbus.protocols import ProtocolFailure, ProtocolTimeout, Query, QueryResponder, Refused, query
from aclbus.testing.cases.protocols.base import ProtocolTestcase, listen

__all__ = ["QueryProtocolTestcase"]

P = Performative


class QueryProtocolTestcase(ProtocolTestcase):
    """FIPA Query: query-if / query-ref → refuse | (agree →) inform | failure."""

    async def test_query_ref_and_query_if(self, bus: Bus) -> None:
        """Both kinds are answered; the responder sees which act was sent."""
        catalog = bus.agent("catalog")
        acts: list[Performative] = []
        prices = {"A1": 10}

        def answer(msg: ACLMessage) -> Any:
            acts.append(msg.performative)
            if msg.performative is P.QUERY_IF:
                return msg.payload["sku"] in prices
            return prices[msg.payload["sku"]]

        QueryResponder(catalog, answer)
        await catalog.start()
        client = bus.agent("client")
        ref = await query(client, "catalog", {"sku": "A1"}, deadline=1.0)
        known = await query(client, "catalog", {"sku": "B2"}, kind="if", deadline=1.0)
        assert ref.payload == 10
        assert known.payload is False
        assert acts == [P.QUERY_REF, P.QUERY_IF]
        assert ref.message.protocol == "fipa-query"

    async def test_refuse_and_failure(self, bus: Bus) -> None:
        """`Refused` from ``answer`` is a refuse; another exception a failure."""
        catalog = bus.agent("catalog")

        def answer(msg: ACLMessage) -> None:
            if msg.payload == "secret":
                raise Refused("not-allowed")
            raise KeyError(msg.payload)

        QueryResponder(catalog, answer)
        await catalog.start()
        client = bus.agent("client")
        with pytest.raises(Refused) as refused:
            await query(client, "catalog", "secret", deadline=1.0)
        assert refused.value.reason == "not-allowed"
        with pytest.raises(ProtocolFailure):
            await query(client, "catalog", "missing", deadline=1.0)

    async def test_query_deadline(self, bus: Bus) -> None:
        """No answer in time: step "response"."""
        listen(bus, "mute")
        await bus.agent("mute").start()
        with pytest.raises(ProtocolTimeout) as caught:
            await Query(bus.agent("client"), "mute", "x", kind="if", deadline=0.3).run()
        assert caught.value.step == "response"
