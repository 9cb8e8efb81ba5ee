"""Ids, topics, subject patterns and the names of subjects, streams and consumers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aclbus import subjects
from aclbus.errors import InvalidIdentifier
from aclbus.subjects import (
    MAX_ID_LENGTH,
    Subjects,
    TrafficClass,
    check_subject,
    subject_matches,
    validate_id,
    validate_topic,
)

# -- validate_id -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["a", "A", "0", "_", "-", "agent-1", "Agent_42", "x" * MAX_ID_LENGTH, "019c13ec-9e00-73c1"],
)
def test_valid_ids(value: str) -> None:
    assert validate_id(value) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("a b", "whitespace"),
        (" a", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\nb", "whitespace"),
        ("a.b", "subject separator or wildcard"),
        ("a*", "subject separator or wildcard"),
        (">", "subject separator or wildcard"),
        ("a\x00b", "not plain ASCII"),
        ("a\x7fb", "not plain ASCII"),
        ("caf\u00e9", "not plain ASCII"),
        ("\u0661", "not plain ASCII"),  # an Arabic-Indic digit: a digit, but not ASCII
        ("agent\u200b", "not plain ASCII"),
        ("a/b", "'/' is not allowed"),
        ("a:b", "':' is not allowed"),
        ("x" * (MAX_ID_LENGTH + 1), "129 characters long"),
    ],
)
def test_invalid_ids_say_why(value: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier, match=reason) as exc:
        validate_id(value, "group")
    assert exc.value.kind == "group"
    assert exc.value.value == value
    assert str(exc.value).startswith("invalid group ")


@pytest.mark.parametrize("value", [None, 7, b"agent", ["a"]])
def test_non_strings_are_not_ids(value: object) -> None:
    with pytest.raises(InvalidIdentifier, match="expected a string"):
        validate_id(value)


def test_invalid_identifier_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid agent id"):
        validate_id("a b")


def test_a_long_bad_id_is_cut_in_the_message() -> None:
    with pytest.raises(InvalidIdentifier) as exc:
        validate_id("y" * 10_000)
    assert len(str(exc.value)) < 300


def test_validating_an_id_twice_gives_the_same_answer() -> None:
    assert validate_id("repeat-me") == validate_id("repeat-me") == "repeat-me"
    for _ in range(2):
        with pytest.raises(InvalidIdentifier):
            validate_id("not ok")


# -- validate_topic ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["orders", "orders.eu.created", "a-b.c_d.0"])
def test_valid_topics(value: str) -> None:
    assert validate_topic(value) == value
    assert validate_topic(value, pattern=True) == value


@pytest.mark.parametrize(
    "value",
    ["", ".", "a.", ".a", "a..b", "a.b c", "a.*", "*", ">", "a.>", "a.\u00e9", "a." + "x" * 129],
)
def test_invalid_topics(value: str) -> None:
    with pytest.raises(InvalidIdentifier, match="invalid topic"):
        validate_topic(value)


def test_invalid_topic_names_the_token() -> None:
    with pytest.raises(InvalidIdentifier, match="token 2"):
        validate_topic("a..b")


@pytest.mark.parametrize("value", ["*", ">", "a.*", "a.>", "*.b", "*.*.c", "a.*.>", "*.>"])
def test_valid_topic_patterns(value: str) -> None:
    assert validate_topic(value, pattern=True) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("a.>.b", "only allowed as the last token"),
        (">.a", "only allowed as the last token"),
        ("a.b*", "token 2"),
        ("a.>>", "token 2"),
        ("a.**", "token 2"),
        ("a..*", "token 2"),
    ],
)
def test_invalid_topic_patterns(value: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier, match=reason):
        validate_topic(value, pattern=True)


@pytest.mark.parametrize("value", [None, 3, b"a.b"])
def test_non_string_topics(value: object) -> None:
    with pytest.raises(InvalidIdentifier, match="non-empty dotted string"):
        validate_topic(value)


# -- subject_matches ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.b", "a.c", False),
        ("a.b", "a.b.c", False),
        ("a.b.c", "a.b", False),
        ("a.*", "a.b", True),
        ("a.*", "a", False),
        ("a.*", "a.b.c", False),
        ("*.b", "a.b", True),
        ("*", "a", True),
        ("*", "a.b", False),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.b.d", False),
        ("a.>", "a.b", True),
        ("a.>", "a.b.c.d", True),
        ("a.>", "a", False),
        (">", "a", True),
        (">", "a.b.c", True),
        ("*.>", "a", False),
        ("*.>", "a.b", True),
        ("a.b*", "a.bc", False),  # a partial wildcard is a literal token in NATS
        ("aclbus.agent.*", "aclbus.agent.bob", True),
        ("aclbus.topic.>", "aclbus.topic.orders.eu", True),
        ("aclbus.topic.>", "aclbus.topics.orders", False),
    ],
)
def test_subject_matches(pattern: str, subject: str, expected: bool) -> None:
    assert subject_matches(pattern, subject) is expected


# -- Subjects ----------------------------------------------------------------------------------


def test_default_subjects() -> None:
    s = Subjects()
    assert s.prefix == "aclbus"
    assert s.inbox("bob") == "aclbus.agent.bob"
    assert s.rpc("bob") == "aclbus.rpc.bob"
    assert s.broadcast == "aclbus.broadcast"
    assert s.group("team-a") == "aclbus.group.team-a"
    assert s.topic("orders.eu.created") == "aclbus.topic.orders.eu.created"
    assert s.topic("orders.*", pattern=True) == "aclbus.topic.orders.*"
    assert s.topic(">", pattern=True) == "aclbus.topic.>"
    assert s.dlq("bob") == "aclbus.dlq.bob"


def test_custom_prefix() -> None:
    s = Subjects("my-app")
    assert s.inbox("bob") == "my-app.agent.bob"
    assert s.stream(TrafficClass.INBOX) == "MY_APP_AGENT"
    assert s.stream_subjects(TrafficClass.TOPIC) == ("my-app.topic.>",)


@pytest.mark.parametrize("prefix", ["", "a.b", "a b", "*", ">", "x" * 129, "pr\u00e9fixe"])
def test_invalid_prefix(prefix: str) -> None:
    with pytest.raises(InvalidIdentifier, match="subject prefix"):
        Subjects(prefix)


def test_stream_names_follow_the_subject_tokens() -> None:
    s = Subjects()
    assert {t: s.stream(t) for t in TrafficClass} == {
        TrafficClass.INBOX: "ACLBUS_AGENT",
        TrafficClass.BROADCAST: "ACLBUS_BROADCAST",
        TrafficClass.GROUP: "ACLBUS_GROUP",
        TrafficClass.TOPIC: "ACLBUS_TOPIC",
        TrafficClass.DLQ: "ACLBUS_DLQ",
    }


def test_stream_subjects() -> None:
    s = Subjects()
    assert {t: s.stream_subjects(t) for t in TrafficClass} == {
        TrafficClass.INBOX: ("aclbus.agent.>",),  # inboxes and their priority lanes
        TrafficClass.BROADCAST: ("aclbus.broadcast",),
        TrafficClass.GROUP: ("aclbus.group.*",),
        TrafficClass.TOPIC: ("aclbus.topic.>",),
        TrafficClass.DLQ: ("aclbus.dlq.*",),
    }


def test_each_stream_captures_its_own_traffic_only() -> None:
    s = Subjects()
    subjects = {
        TrafficClass.INBOX: s.inbox("bob"),
        TrafficClass.BROADCAST: s.broadcast,
        TrafficClass.GROUP: s.group("g"),
        TrafficClass.TOPIC: s.topic("a.b.c"),
        TrafficClass.DLQ: s.dlq("bob"),
    }
    for traffic in TrafficClass:
        patterns = s.stream_subjects(traffic)
        for other, subject in subjects.items():
            captured = any(subject_matches(p, subject) for p in patterns)
            assert captured is (other is traffic), (traffic, subject)
    assert not any(
        subject_matches(p, s.rpc("bob")) for t in TrafficClass for p in s.stream_subjects(t)
    )
    lane = s.priority_inbox("bob")
    assert lane == "aclbus.agent.bob.high"
    assert [
        t for t in TrafficClass if any(subject_matches(p, lane) for p in s.stream_subjects(t))
    ] == [TrafficClass.INBOX]


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.inbox("a.b"),
        lambda s: s.rpc("a b"),
        lambda s: s.group("*"),
        lambda s: s.topic("a.>"),
        lambda s: s.dlq(""),
        lambda s: s.durable("agent", "a.b"),
    ],
)
def test_subject_parts_are_validated(call: object) -> None:
    with pytest.raises(InvalidIdentifier):
        call(Subjects())  # type: ignore[operator]


def test_durable_names_have_no_dots() -> None:
    s = Subjects()
    assert s.durable("agent", "bob") == "aclbus-agent-bob"
    assert s.durable("group", "team", "bob") == "aclbus-group-team-bob"
    assert "." not in s.durable("x", "a_b")


def test_subjects_is_immutable() -> None:
    s = Subjects()
    with pytest.raises(AttributeError):
        s.prefix = "other"  # type: ignore[misc]


@settings(max_examples=500, deadline=None)
@given(st.text(st.sampled_from("ab.*>_- \t\n\x00\x1c\xa0\u2028é"), max_size=12))
def test_check_subject_refuses_exactly_what_the_rules_refuse(subject: str) -> None:
    """The quick acceptance of plain subjects never lets through what the rules refuse."""
    problem = subjects._subject_problem(subject, wildcards=False)
    if problem is None:
        assert check_subject(subject) == subject
    else:
        with pytest.raises(InvalidIdentifier, match=re.escape(problem)):
            check_subject(subject)
