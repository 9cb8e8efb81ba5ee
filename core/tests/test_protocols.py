"""The protocols' state machines, deadlines and errors, without a bus."""

from __future__ import annotations

import math

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.errors import ACLBusError
from aclbus.protocols import (
    InvalidDeadline,
    OutOfSequence,
    ProtocolFailure,
    ProtocolTimeout,
    Refused,
    StateMachine,
)
from aclbus.protocols.contract_net import CONTRACT_NET_INITIATOR, CONTRACT_NET_PARTICIPANT
from aclbus.protocols.conversation import MAX_DEADLINE, Transitions, check_deadline, error_payload
from aclbus.protocols.query import QUERY_INITIATOR, QUERY_PARTICIPANT
from aclbus.protocols.request import REQUEST_INITIATOR, REQUEST_PARTICIPANT
from aclbus.protocols.subscribe import SUBSCRIBE_INITIATOR, SUBSCRIBE_PARTICIPANT

P = Performative

TABLES: dict[str, tuple[Transitions, str]] = {
    "request-initiator": (REQUEST_INITIATOR, "requested"),
    "request-participant": (REQUEST_PARTICIPANT, "idle"),
    "query-initiator": (QUERY_INITIATOR, "queried"),
    "query-participant": (QUERY_PARTICIPANT, "idle"),
    "cnet-initiator": (CONTRACT_NET_INITIATOR, "cfp-sent"),
    "cnet-participant": (CONTRACT_NET_PARTICIPANT, "idle"),
    "subscribe-initiator": (SUBSCRIBE_INITIATOR, "subscribing"),
    "subscribe-participant": (SUBSCRIBE_PARTICIPANT, "idle"),
}


def machine(name: str) -> StateMachine:
    table, initial = TABLES[name]
    return StateMachine("fipa-x", name, table, initial)


@pytest.mark.parametrize("name", list(TABLES))
def test_every_state_is_reachable_and_some_end(name: str) -> None:
    table, initial = TABLES[name]
    reached, todo = {initial}, [initial]
    while todo:
        for after in table.get(todo.pop(), {}).values():
            if after not in reached:
                reached.add(after)
                todo.append(after)
    assert set(table) <= reached
    assert any(state not in table for state in reached), "no final state"


def test_request_with_agree() -> None:
    m = machine("request-initiator")
    assert m.receive(P.AGREE) == "agreed"
    assert not m.done
    assert m.receive("inform") == "done"
    assert m.done


def test_request_without_agree_and_refuse() -> None:
    m = machine("request-initiator")
    assert m.receive(P.INFORM) == "done"
    m = machine("request-initiator")
    assert m.receive(P.REFUSE) == "refused"
    assert m.done


def test_out_of_sequence_leaves_the_state() -> None:
    m = machine("request-initiator")
    m.receive(P.AGREE)
    with pytest.raises(OutOfSequence, match="cannot receive agree in state 'agreed'") as caught:
        m.receive(P.AGREE)
    assert caught.value.state == "agreed"
    assert m.state == "agreed"
    with pytest.raises(OutOfSequence):
        m.receive(P.PROPOSE)
    with pytest.raises(OutOfSequence):
        m.send(P.INFORM)  # the initiator receives the result, never sends it
    assert m.state == "agreed"


def test_direction_matters() -> None:
    m = machine("request-participant")
    m.receive(P.REQUEST)
    assert m.allows("out", P.AGREE)
    assert not m.allows("in", P.AGREE)
    with pytest.raises(OutOfSequence):
        m.receive(P.INFORM)
    m.send(P.AGREE)
    with pytest.raises(OutOfSequence):
        m.send(P.REFUSE)  # no refusing after agreeing
    assert m.send(P.FAILURE) == "failed"


def test_unknown_act_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not-an-act"):
        machine("request-participant").receive("not-an-act")


def test_contract_net_roles() -> None:
    manager, bidder = machine("cnet-initiator"), machine("cnet-participant")
    bidder.receive(P.CFP)
    bidder.send(P.PROPOSE)
    manager.receive(P.PROPOSE)
    manager.send(P.ACCEPT_PROPOSAL)
    bidder.receive(P.ACCEPT_PROPOSAL)
    bidder.send(P.INFORM)
    manager.receive(P.INFORM)
    assert (manager.state, bidder.state) == ("done", "done")
    assert manager.done
    assert bidder.done


def test_contract_net_rejected_bidder_cannot_inform() -> None:
    bidder = machine("cnet-participant")
    bidder.receive(P.CFP)
    bidder.send(P.PROPOSE)
    bidder.receive(P.REJECT_PROPOSAL)
    assert bidder.done
    with pytest.raises(OutOfSequence):
        bidder.send(P.INFORM)


def test_query_takes_every_inform_kind() -> None:
    for act in (P.INFORM, P.INFORM_IF, P.INFORM_REF):
        m = machine("query-initiator")
        assert m.receive(act) == "done"
    m = machine("query-participant")
    m.receive(P.QUERY_IF)
    assert m.send(P.INFORM) == "done"


def test_subscribe_informs_repeat_until_failure() -> None:
    m = machine("subscribe-initiator")
    assert m.receive(P.AGREE) == "active"
    for _ in range(3):
        assert m.receive(P.INFORM) == "active"
    with pytest.raises(OutOfSequence):
        m.receive(P.AGREE)
    assert m.receive(P.FAILURE) == "failed"
    assert m.done


def test_finish_ends_the_machine() -> None:
    m = machine("subscribe-initiator")
    m.finish("cancelled")
    assert m.done
    assert not m.allows("in", P.INFORM)


@pytest.mark.parametrize("good", [0.001, 1, 2.5, MAX_DEADLINE])
def test_good_deadlines(good: float) -> None:
    assert check_deadline("deadline", good) == float(good)


@pytest.mark.parametrize(
    "bad", [0, -1, -0.0, math.nan, math.inf, -math.inf, MAX_DEADLINE * 2, "1", None, True, [1]]
)
def test_bad_deadlines(bad: object) -> None:
    with pytest.raises(InvalidDeadline, match="result_deadline") as caught:
        check_deadline("result_deadline", bad)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ACLBusError)
    assert caught.value.value is bad


def test_errors_read_the_reason_from_the_message() -> None:
    msg = ACLMessage(performative=P.REFUSE, sender_id="w", payload={"reason": "busy"})
    refused = Refused(peer="w", message=msg)
    assert refused.reason == "busy"
    assert "'w' refused: busy" in str(refused)
    assert Refused("no").reason == "no"
    failure = ProtocolFailure(peer="w", message=msg.model_copy(update={"payload": "plain"}))
    assert failure.reason == "plain"
    timeout = ProtocolTimeout("fipa-request", "result", "c1", 0.5)
    assert isinstance(timeout, TimeoutError)
    assert isinstance(timeout, ACLBusError)
    assert "no result within 0.5 s" in str(timeout)


def test_error_payloads() -> None:
    assert error_payload(Refused("busy")) == {"reason": "busy"}
    assert error_payload(TimeoutError()) == {"reason": "timeout"}
    payload = error_payload(RuntimeError("nats://user:s3cret@host password=hunter2"))
    assert payload["reason"] == "error"
    assert payload["error"] == "RuntimeError"
    assert "s3cret" not in payload["message"]
    assert "hunter2" not in payload["message"]
