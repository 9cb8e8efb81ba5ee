"""`acl.build`, the quick way `Agent.message` makes messages, against `ACLMessage(...)`.

The quick way must give the same message as pydantic for every input it takes, and leave
every input it cannot vouch for to pydantic: so the two are compared on values of every kind,
valid and not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aclbus.acl import MAX_HOPS, MAX_RETRY_COUNT, ACLMessage, Performative, build

BOUNDED = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_ODD = st.sampled_from([None, "", 0, 1.5, True, b"id", ["a"], ("a",)])
# Per field: valid values, and values at the edges of what the quick checks take.
_ID = (["alice", "bob-2", "B_3", "x" * 128], ["x" * 129, "a b", "a.b", "ünï", ""])
_DOTTED = (["task", "task.request", "a.b-c.d_e"], ["a..b", ".a", "a b", "*", "a.>"])
_TEXT = (["en", "json ld", "a:b", "~"], [" en", "en ", "a\tb", "é", "x" * 1025, ""])
_FIELDS: dict[str, tuple[list[Any], list[Any]]] = {
    "sender_id": _ID,
    "message_id": _ID,
    "receiver_id": _ID,
    "correlation_id": _ID,
    "reply_to": _ID,
    "reply_with": _ID,
    "in_reply_to": _ID,
    "protocol": _ID,
    "message_type": _DOTTED,
    "topic": _DOTTED,
    "routing_key": _TEXT,
    "language": _TEXT,
    "ontology": _TEXT,
    "priority": ([0, 4, 9], [-1, 10]),
    "hops": ([0, 1, MAX_HOPS], [-1, MAX_HOPS + 1]),
    "retry_count": ([0, 3, MAX_RETRY_COUNT], [-1, MAX_RETRY_COUNT + 1]),
    "payload": ([None, 1, "x", {"a": [1]}, [1.5]], []),
}
# Fields build leaves to pydantic.
_OTHERS: dict[str, list[Any]] = {
    "ttl": [None, 5, 2.5, 0.5],
    "receivers": [(), ("a", "b"), ["a"]],
    "timestamp": [datetime(2026, 1, 1, tzinfo=UTC), "2026-01-01T00:00:00Z"],
    "headers": [{}, {"x-a": "1"}],
    "bogus": [1],
}


@st.composite
def _calls(draw: st.DrawFn) -> dict[str, Any]:
    """Valid fields but one, which is valid, at an edge, odd, or a field left to pydantic."""
    names = draw(st.lists(st.sampled_from(sorted(_FIELDS)), max_size=5, unique=True))
    fields = {name: draw(st.sampled_from(_FIELDS[name][0])) for name in names}
    fields.setdefault("sender_id", "alice")
    fields["performative"] = Performative.INFORM
    probe = draw(st.sampled_from(sorted({*_FIELDS, *_OTHERS, "performative"})))
    if probe == "performative":
        choices: list[Any] = [Performative.CFP, "request", "shout", 3, ["inform"]]
    elif probe in _OTHERS:
        choices = _OTHERS[probe]
    else:
        choices = [*_FIELDS[probe][0], *_FIELDS[probe][1]]
    fields[probe] = draw(st.one_of(st.sampled_from(choices), _ODD))
    if draw(st.integers(0, 9)) == 0:
        del fields[draw(st.sampled_from(["performative", "sender_id"]))]  # required ones
    return fields


def _made(fields: dict[str, Any]) -> ACLMessage | list[Any]:
    try:
        maker = build if fields.get("_quick") else ACLMessage
        return maker(**{k: v for k, v in fields.items() if k != "_quick"})
    except ValidationError as exc:
        return [(e["loc"], e["type"]) for e in exc.errors()]


def _check_same(fields: dict[str, Any]) -> None:
    quick = _made({**fields, "_quick": True})
    slow = _made(fields)
    if isinstance(slow, list):
        assert quick == slow  # the same errors: pydantic made them both
        return
    assert isinstance(quick, ACLMessage)
    got, want = dict(quick.__dict__), dict(slow.__dict__)
    for made in ("message_id", "timestamp"):  # new for each message unless given
        if made not in fields:
            assert (got.pop(made), want.pop(made)).__class__ is tuple
    assert got == want
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
    assert quick.model_fields_set == slow.model_fields_set
    assert ACLMessage.model_validate(quick.model_dump()) == quick  # a valid message


@BOUNDED
@given(_calls())
def test_build_makes_what_pydantic_makes(fields: dict[str, Any]) -> None:
    _check_same(fields)


_ODD_VALUES = [None, "", 0, 1.5, True, b"id", ["a"], ("a",)]
_PROBES = [
    *((name, value) for name, (good, edge) in _FIELDS.items() for value in good + edge),
    *((name, value) for name in _FIELDS for value in _ODD_VALUES),
    *((name, value) for name, values in _OTHERS.items() for value in values),
    *(("performative", p) for p in [Performative.CFP, "request", "shout", 3, None, ["inform"]]),
]


@pytest.mark.parametrize(("name", "value"), _PROBES, ids=repr)
def test_build_takes_each_value_as_pydantic_does(name: str, value: Any) -> None:
    """Every field build checks, with every kind of value: alone, so none hides another."""
    base = {"performative": "inform", "sender_id": "alice", "receiver_id": "bob"}
    _check_same({**base, name: value})


def test_build_fills_in_a_new_id_and_time() -> None:
    before = datetime.now(UTC)
    first = build(performative="inform", sender_id="a", payload=[1])
    second = build(performative="inform", sender_id="a", payload=[1])
    assert first.message_id != second.message_id
    assert before <= first.timestamp <= second.timestamp
    assert first.timestamp.tzinfo is UTC
    assert first.performative is Performative.INFORM


def test_build_names_the_bad_field_as_pydantic_does() -> None:
    with pytest.raises(ValidationError) as exc:
        build(performative="inform", sender_id="a", receiver_id="not an id")
    assert exc.value.errors()[0]["loc"] == ("receiver_id",)
