"""ACLMessage validation, reply() semantics, Performative, UUIDv7 ids, TTL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from aclbus._internal import uuid7 as uuid7_module
from aclbus._internal.uuid7 import new_id, uuid7
from aclbus.acl import (
    ACL_VERSION,
    ENVELOPE_EXTENSION_NAMES,
    MAX_RETRY_COUNT,
    ACLMessage,
    Performative,
)

T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)

FIPA_ACTS = {
    "accept-proposal",
    "agree",
    "cancel",
    "cfp",
    "confirm",
    "disconfirm",
    "failure",
    "inform",
    "inform-if",
    "inform-ref",
    "not-understood",
    "propagate",
    "propose",
    "proxy",
    "query-if",
    "query-ref",
    "refuse",
    "reject-proposal",
    "request",
    "request-when",
    "request-whenever",
    "subscribe",
}


def make(**fields: Any) -> ACLMessage:
    values: dict[str, Any] = {"performative": "inform", "sender_id": "alice"}
    values.update(fields)
    return ACLMessage(**values)


# -- Performative ------------------------------------------------------------------------------


def test_performative_has_exactly_the_22_fipa_acts() -> None:
    assert len(Performative) == 22
    assert {p.value for p in Performative} == FIPA_ACTS


def test_performative_member_names_match_values() -> None:
    for p in Performative:
        assert p.name == p.value.upper().replace("-", "_")
        assert p == p.value  # a StrEnum: compares equal to its FIPA name


def test_performative_from_string() -> None:
    assert make(performative="query-ref").performative is Performative.QUERY_REF


# -- defaults ----------------------------------------------------------------------------------


def test_minimal_message_defaults() -> None:
    before = datetime.now(UTC)
    msg = ACLMessage(performative=Performative.INFORM, sender_id="alice")
    after = datetime.now(UTC)
    assert uuid.UUID(msg.message_id).version == 7
    assert before <= msg.timestamp <= after
    assert msg.timestamp.tzinfo is UTC
    assert msg.priority == 4
    assert msg.retry_count == 0
    assert msg.ttl is None
    assert msg.payload is None
    assert msg.receivers == ()
    assert msg.headers == {}
    assert msg.extensions == {}
    assert msg.acl_version == ACL_VERSION == "1.0"
    for name in (
        "correlation_id",
        "reply_to",
        "receiver_id",
        "message_type",
        "topic",
        "routing_key",
        "reply_with",
        "in_reply_to",
        "reply_by",
        "protocol",
        "language",
        "ontology",
    ):
        assert getattr(msg, name) is None, name


def test_each_message_gets_its_own_id() -> None:
    assert make().message_id != make().message_id


def test_message_is_frozen() -> None:
    msg = make()
    with pytest.raises(ValidationError) as exc:
        msg.priority = 9  # type: ignore[misc]
    assert exc.value.errors()[0]["loc"] == ("priority",)


def test_naive_timestamp_is_taken_as_utc() -> None:
    msg = make(timestamp=datetime(2026, 1, 31, 12, 0))
    assert msg.timestamp == T0
    assert msg.timestamp.tzinfo is UTC


def test_aware_timestamp_is_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    msg = make(timestamp=datetime(2026, 1, 31, 14, 0, tzinfo=plus_two), reply_by=T0)
    assert msg.timestamp == T0
    assert msg.timestamp.utcoffset() == timedelta(0)
    assert msg.reply_by is not None
    assert msg.reply_by.tzinfo is UTC


def test_all_fields_accept_valid_values() -> None:
    msg = make(
        message_id="m-1",
        correlation_id="conv_1",
        reply_to="alice-desk",
        timestamp=T0,
        ttl=1,
        priority=9,
        retry_count=MAX_RETRY_COUNT,
        receiver_id="bob",
        receivers=["carol", "dave"],
        message_type="task.translate",
        payload={"any": ["json", 1, 2.5, None, True]},
        topic="orders.eu.created",
        routing_key="customer 17/eu",
        reply_with="q1",
        in_reply_to="q0",
        reply_by=T0 + timedelta(minutes=1),
        protocol="fipa-request",
        language="application/json",
        ontology="https://example.org/onto#v1",
        acl_version="1.3",
        headers={"traceparent": "00-abc-def-01", "x_tenant": "t1"},
        extensions={"deadline-policy": "strict"},
    )
    assert msg.receivers == ("carol", "dave")
    assert msg.ttl == 1.0
    assert msg.retry_count == 2**31 - 1


# -- validation: every bad value names its field -----------------------------------------------

BAD_VALUES: list[tuple[str, Any]] = [
    ("message_id", ""),
    ("message_id", "a b"),
    ("message_id", "a.b"),
    ("message_id", "x" * 129),
    ("message_id", 123),
    ("correlation_id", "conv*"),
    ("reply_to", "bob>"),
    ("timestamp", "yesterday"),
    ("timestamp", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))),
    ("ttl", 0.5),
    ("ttl", 0),
    ("ttl", -5),
    ("ttl", float("inf")),
    ("ttl", float("nan")),
    ("ttl", "soon"),
    ("priority", -1),
    ("priority", 10),
    ("priority", "high"),
    ("priority", 4.5),
    ("retry_count", -1),
    ("retry_count", MAX_RETRY_COUNT + 1),
    ("sender_id", "alice@example.org"),
    ("sender_id", None),
    ("receiver_id", "bob\n"),
    ("receivers", ["carol", "dave smith"]),
    ("receivers", "carol"),
    ("message_type", "task..translate"),
    ("message_type", "task.*"),
    ("message_type", ""),
    ("performative", "shout"),
    ("performative", "INFORM"),
    ("topic", "orders.>"),
    ("topic", "orders.eu."),
    ("routing_key", ""),
    ("routing_key", " leading"),
    ("routing_key", "trailing "),
    ("routing_key", "caf\u00e9"),
    ("routing_key", "tab\there"),
    ("routing_key", "x" * 1025),
    ("reply_with", "r\u00e9ply"),
    ("in_reply_to", "a:b"),
    ("reply_by", "not a time"),
    ("protocol", "fipa request"),
    ("language", "line\r\nbreak"),
    ("ontology", "\x00"),
    ("acl_version", "1"),
    ("acl_version", "v1.0"),
    ("acl_version", "1.0.0"),
    ("acl_version", "12345.0"),
    ("headers", {"X-Upper": "v"}),
    ("headers", {"-dash": "v"}),
    ("headers", {"a.b": "v"}),
    ("headers", {"x" * 129: "v"}),
    ("headers", {"ce-id": "v"}),
    ("headers", {"acl-priority": "9"}),
    ("headers", {"nats-msg-id": "v"}),
    ("headers", {"content-type": "text/plain"}),
    ("headers", {"ok": "bad\nvalue"}),
    ("headers", {"ok": ""}),
    ("extensions", {"Upper": "v"}),
    ("extensions", {"priority": "9"}),
    ("extensions", {"version": "2.0"}),
    ("extensions", {"ok": "caf\u00e9"}),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_bad_value_gives_validation_error_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        make(**{field: value})
    locations = {error["loc"][0] for error in exc.value.errors()}
    assert locations == {field}


def test_missing_required_fields_are_named() -> None:
    with pytest.raises(ValidationError) as exc:
        ACLMessage()  # type: ignore[call-arg]
    assert {e["loc"][0] for e in exc.value.errors()} == {"performative", "sender_id"}


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        make(colour="blue")
    assert exc.value.errors()[0]["loc"] == ("colour",)
    assert exc.value.errors()[0]["type"] == "extra_forbidden"


def test_id_error_says_why() -> None:
    with pytest.raises(ValidationError, match="subject separator or wildcard"):
        make(receiver_id="a.b")


def test_every_envelope_header_name_is_refused_as_extension() -> None:
    for name in ENVELOPE_EXTENSION_NAMES:
        with pytest.raises(ValidationError, match=f"acl-{name}"):
            make(extensions={name: "1"})


def test_header_text_limits() -> None:
    assert make(routing_key="x" * 1024).routing_key == "x" * 1024
    assert make(routing_key="a b").routing_key == "a b"
    assert make(routing_key="!").routing_key == "!"


def test_header_names_may_look_like_reserved_ones_without_their_dash() -> None:
    msg = make(headers={"ce": "1", "acl_x": "2", "content-type-x": "3", "natsy": "4"})
    assert set(msg.headers) == {"ce", "acl_x", "content-type-x", "natsy"}


# -- receivers ---------------------------------------------------------------------------------


def test_all_receivers_puts_receiver_id_first_without_repeats() -> None:
    assert make().all_receivers == ()
    assert make(receiver_id="bob").all_receivers == ("bob",)
    assert make(receivers=["c", "d"]).all_receivers == ("c", "d")
    assert make(receiver_id="b", receivers=["c", "b", "d"]).all_receivers == ("b", "c", "d")


# -- TTL ---------------------------------------------------------------------------------------


def test_no_ttl_never_expires() -> None:
    msg = make(timestamp=T0)
    assert msg.expires_at is None
    assert not msg.is_expired(datetime.max.replace(tzinfo=UTC))


def test_ttl_expiry_boundary() -> None:
    msg = make(timestamp=T0, ttl=10)
    assert msg.expires_at == T0 + timedelta(seconds=10)
    assert not msg.is_expired(T0 + timedelta(seconds=9.999))
    assert msg.is_expired(T0 + timedelta(seconds=10))


def test_is_expired_takes_a_naive_now_as_utc() -> None:
    msg = make(timestamp=T0, ttl=10)
    assert msg.is_expired(datetime(2026, 1, 31, 12, 0, 11))
    assert not msg.is_expired(datetime(2026, 1, 31, 12, 0, 5))


def test_is_expired_defaults_to_now() -> None:
    assert make(timestamp=datetime.now(UTC) - timedelta(seconds=5), ttl=1).is_expired()
    assert not make(ttl=3600).is_expired()


def test_huge_ttl_does_not_overflow() -> None:
    msg = make(timestamp=T0, ttl=1e300)
    assert msg.expires_at == datetime.max.replace(tzinfo=UTC)
    assert not msg.is_expired(datetime(9999, 12, 31, tzinfo=UTC))


# -- reply() -----------------------------------------------------------------------------------


def original(**fields: Any) -> ACLMessage:
    values: dict[str, Any] = {
        "performative": "request",
        "sender_id": "alice",
        "receiver_id": "bob",
        "timestamp": T0,
        "payload": {"q": 1},
    }
    values.update(fields)
    return ACLMessage(**values)


def test_reply_goes_to_the_sender_from_the_receiver() -> None:
    msg = original()
    reply = msg.reply(Performative.INFORM, {"a": 2})
    assert reply.sender_id == "bob"
    assert reply.receiver_id == "alice"
    assert reply.performative is Performative.INFORM
    assert reply.payload == {"a": 2}


def test_reply_goes_to_reply_to_when_set() -> None:
    reply = original(reply_to="alice-desk").reply("agree")
    assert reply.receiver_id == "alice-desk"
    assert reply.reply_to is None


def test_reply_copies_the_conversation_or_starts_it_from_the_message_id() -> None:
    assert original(correlation_id="conv-1").reply("agree").correlation_id == "conv-1"
    msg = original()
    assert msg.reply("agree").correlation_id == msg.message_id


def test_reply_in_reply_to_is_reply_with_or_the_message_id() -> None:
    assert original(reply_with="q-7").reply("agree").in_reply_to == "q-7"
    msg = original(in_reply_to="earlier")
    assert msg.reply("agree").in_reply_to == msg.message_id


def test_reply_has_a_new_id_and_time() -> None:
    msg = original()
    before = datetime.now(UTC)
    reply = msg.reply("inform")
    assert reply.message_id != msg.message_id
    assert uuid.UUID(reply.message_id).version == 7
    assert reply.timestamp != msg.timestamp
    assert before <= reply.timestamp <= datetime.now(UTC)


def test_reply_copies_protocol_language_ontology_and_priority() -> None:
    msg = original(protocol="fipa-request", language="json", ontology="travel", priority=8)
    reply = msg.reply("inform")
    assert (reply.protocol, reply.language, reply.ontology, reply.priority) == (
        "fipa-request",
        "json",
        "travel",
        8,
    )


def test_reply_does_not_copy_other_fields() -> None:
    msg = original(
        reply_with="q1",
        reply_by=T0 + timedelta(minutes=1),
        ttl=30,
        retry_count=3,
        message_type="task.translate",
        topic="a.b",
        routing_key="k",
        headers={"traceparent": "x"},
        extensions={"future": "y"},
        receivers=["carol"],
    )
    reply = msg.reply("inform", sender_id="bob")
    assert reply.reply_with is None
    assert reply.reply_by is None
    assert reply.ttl is None
    assert reply.retry_count == 0
    assert reply.message_type is None
    assert reply.topic is None
    assert reply.routing_key is None
    assert reply.headers == {}
    assert reply.extensions == {}
    assert reply.receivers == ()


def test_reply_fields_override_the_defaults() -> None:
    reply = original(protocol="fipa-query").reply(
        "inform", None, protocol="fipa-request", priority=1, correlation_id="other"
    )
    assert (reply.protocol, reply.priority, reply.correlation_id) == ("fipa-request", 1, "other")


def test_reply_to_a_broadcast_needs_a_sender() -> None:
    msg = ACLMessage(performative="cfp", sender_id="alice")
    with pytest.raises(ValueError, match="sender_id"):
        msg.reply("propose")
    reply = msg.reply("propose", {"price": 3}, sender_id="carol")
    assert reply.sender_id == "carol"
    assert reply.receiver_id == "alice"
    assert reply.in_reply_to == msg.message_id


def test_reply_to_a_message_for_several_receivers_needs_a_sender() -> None:
    msg = original(receivers=["carol"])
    with pytest.raises(ValueError, match="2 receivers"):
        msg.reply("agree")
    assert msg.reply("agree", sender_id="carol").sender_id == "carol"


def test_reply_sender_comes_from_a_single_entry_in_receivers() -> None:
    msg = ACLMessage(performative="request", sender_id="alice", receivers=["carol"])
    assert msg.reply("agree").sender_id == "carol"
    same = original(receivers=["bob"])  # receiver_id repeated in receivers: still one receiver
    assert same.reply("agree").sender_id == "bob"


def test_reply_with_a_bad_performative_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as exc:
        original().reply("shout")
    assert exc.value.errors()[0]["loc"] == ("performative",)


# -- UUIDv7 ------------------------------------------------------------------------------------


def test_uuid7_layout() -> None:
    before_ms = datetime.now(UTC).timestamp() * 1000
    value = uuid7()
    after_ms = datetime.now(UTC).timestamp() * 1000
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert before_ms - 1 <= value.int >> 80 <= after_ms + 1
    assert str(value) == str(value).lower()


def test_new_ids_are_unique_and_sort_in_creation_order() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids[:100])


def test_uuid7_stays_monotonic_when_the_clock_stands_still_or_goes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1_769_860_800_000 * 1_000_000]
    monkeypatch.setattr(uuid7_module.time, "time_ns", lambda: now[0])
    ids = [uuid7() for _ in range(10_000)]  # more than the 4096 counter values of one ms
    now[0] -= 5_000 * 1_000_000  # the clock jumps 5 s back
    ids += [uuid7() for _ in range(100)]
    assert [i.int for i in ids] == sorted(i.int for i in ids)
    assert len({i.int for i in ids}) == len(ids)
    assert all(i.version == 7 for i in ids)


def test_the_fast_reply_equals_a_validated_one() -> None:
    """`reply` skips re-validating the original's fields: the result must not differ."""
    original = ACLMessage(
        performative="request",
        sender_id="alice",
        receiver_id="bob",
        reply_to="desk",
        correlation_id="conv-1",
        reply_with="q1",
        protocol="fipa-request",
        language="json",
        ontology="travel",
        priority=8,
        hops=2,
        caused_by=("m0",),
        headers={"x-a": "1"},
        extensions={"future": "yes"},
    )
    fast = original.reply("inform", {"ok": True})
    slow = ACLMessage(**{**fast.model_dump(), "performative": "inform"})
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set | fast.model_fields_set
    assert (fast.receiver_id, fast.sender_id, fast.hops) == ("desk", "bob", 3)
    assert fast.caused_by == ("m0", original.message_id)
    assert original.reply("agree", sender_id="carol").sender_id == "carol"
    with pytest.raises(ValidationError):
        original.reply("shout")
    with pytest.raises(ValidationError):
        original.reply("inform", sender_id="bad id")
