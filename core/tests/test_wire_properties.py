"""Hypothesis properties of the wire format.

(a) Any valid message survives ``decode(encode(m)) == m``.
(b) ``decode`` given any headers and body either returns a valid message or raises
    `ACLDecodeError`: nothing else, ever (a consumer must never crash on input).
"""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aclbus import wire
from aclbus.acl import (
    ENVELOPE_EXTENSION_NAMES,
    MAX_RETRY_COUNT,
    RESERVED_HEADER_NAMES,
    RESERVED_HEADER_PREFIXES,
    ACLMessage,
    Performative,
)
from aclbus.codec import CodecRegistry, JsonCodec
from aclbus.errors import ACLDecodeError
from aclbus.wire import decoding, header_block, timestamps

CODECS = CodecRegistry([JsonCodec()])
BOUNDED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies for valid messages -------------------------------------------------------------

ID_CHARS = string.ascii_letters + string.digits + "_-"
ids = st.text(ID_CHARS, min_size=1, max_size=128)
short_ids = st.text(ID_CHARS, min_size=1, max_size=12)
dotted = st.lists(short_ids, min_size=1, max_size=6).map(".".join)

PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
VISIBLE = PRINTABLE[1:]  # no space
header_text = st.one_of(
    st.text(VISIBLE, min_size=1, max_size=1),
    st.builds(
        lambda a, mid, b: a + mid + b,
        st.sampled_from(VISIBLE),
        st.text(PRINTABLE, max_size=60),
        st.sampled_from(VISIBLE),
    ),
    st.just("x" * 1024),
)

NAME_START = string.ascii_lowercase + string.digits
NAME_CHARS = NAME_START + "_-"
header_names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(NAME_START),
    st.text(NAME_CHARS, max_size=30),
)
app_header_names = header_names.filter(
    lambda n: not n.startswith(RESERVED_HEADER_PREFIXES) and n not in RESERVED_HEADER_NAMES
)
extension_names = header_names.filter(lambda n: n not in ENVELOPE_EXTENSION_NAMES)

offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
times = st.one_of(
    st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.one_of(st.just(UTC), offsets),
    ),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),  # naive = UTC
)

unicode_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.integers(),  # any size: JSON integers have no limit, and aclbus keeps them exact
    st.sampled_from([2**64, -(2**63) - 1, 10**400, -(10**400)]),
    st.floats(allow_nan=False, allow_infinity=False),
    unicode_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(unicode_text, children, max_size=5),
    ),
    max_leaves=12,
)

versions = st.builds(
    lambda zeros, minor: f"{'0' * zeros}1.{minor}",
    st.integers(0, 3),
    st.integers(0, 9999),
)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


messages = st.builds(
    ACLMessage,
    message_id=ids,
    correlation_id=optional(ids),
    reply_to=optional(ids),
    timestamp=times,
    ttl=optional(
        st.one_of(
            st.floats(min_value=1.0, allow_nan=False, allow_infinity=False),
            st.integers(min_value=1, max_value=10**9),
        )
    ),
    priority=st.integers(0, 9),
    retry_count=st.integers(0, MAX_RETRY_COUNT),
    sender_id=ids,
    receiver_id=optional(ids),
    receivers=st.lists(short_ids, max_size=5).map(tuple),
    message_type=optional(dotted),
    performative=st.sampled_from(Performative),
    payload=json_values,
    topic=optional(dotted),
    routing_key=optional(header_text),
    reply_with=optional(ids),
    in_reply_to=optional(ids),
    reply_by=optional(times),
    protocol=optional(ids),
    language=optional(header_text),
    ontology=optional(header_text),
    acl_version=versions,
    headers=st.dictionaries(app_header_names, header_text, max_size=4),
    extensions=st.dictionaries(extension_names, header_text, max_size=4),
)


@BOUNDED
@given(messages, st.sampled_from([str.upper, str.title]))
def test_decode_encode_round_trip(msg: ACLMessage, case: Any) -> None:
    headers, body = wire.encode(msg, CODECS)
    size = wire.encoded_size(headers, body)
    decoded = wire.decode(headers, body, CODECS, max_bytes=size)
    assert decoded == msg
    assert wire.encode(decoded, CODECS) == (headers, body)
    # Other clients write other cases (nats.go: Ce-Id): names are case-insensitive.
    assert wire.decode({case(k): v for k, v in headers.items()}, body, CODECS) == msg


@BOUNDED
@given(json_values, st.booleans())
def test_json_bodies_read_as_the_standard_library_reads_them(value: Any, ascii_only: bool) -> None:
    """Integers of any size come back exactly, of type int; what orjson writes reads back."""
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    decoded = JsonCodec().decode(body)
    assert decoded == json.loads(body)
    assert _types(decoded) == _types(json.loads(body))
    assert JsonCodec().decode(JsonCodec().encode(value)) == value


def _types(value: Any) -> list[type]:
    if isinstance(value, dict):
        return [t for v in value.values() for t in _types(v)]
    if isinstance(value, list):
        return [t for v in value for t in _types(v)]
    return [type(value)]


# -- (b) decode never raises anything but ACLDecodeError ---------------------------------------

KNOWN_HEADERS = [
    "ce-specversion",
    "ce-id",
    "ce-source",
    "ce-type",
    "ce-time",
    "content-type",
    *(f"acl-{name}" for name in sorted(ENVELOPE_EXTENSION_NAMES)),
    "acl-",
    "nats-msg-id",
]
garbage_text = st.one_of(
    st.text(max_size=40),  # any code point, surrogates and controls included
    st.text(PRINTABLE, max_size=40),
    st.sampled_from(
        [
            "",
            " ",
            "1.0",
            "2.0",
            "0",
            "9",
            "10",
            "-1",
            "1e400",
            "inf",
            "nan",
            "2026-01-31T12:00:00Z",
            "0001-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59-23:59",
            "fipa.acl.inform",
            "application/json",
            "a,b",
            "a..b",
            "x" * 5000,
            "9" * 5000,
        ]
    ),
)
garbage_names = st.one_of(st.sampled_from(KNOWN_HEADERS), st.text(max_size=20))
garbage_headers = st.dictionaries(garbage_names, garbage_text, max_size=12)
garbage_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: JsonCodec().encode(v)),
    st.sampled_from(
        [
            b"",
            b"null",
            b"NaN",
            b"1e400",
            b"[" * 2000,
            b'"\\ud800"',
            b"1" + b"0" * 400,
            b"[1" + b"0" * 5000 + b"]",
            b'[-1e400, "\\ud800"]',
            b"[" * 2000 + b"1" * 25,
            b'{"a": 1' + b"0" * 30 + b', "b": NaN}',
        ]
    ),
)


def check_decode(headers: Any, body: bytes, max_bytes: int | None = None) -> None:
    error: ACLDecodeError | None = None
    try:
        msg = wire.decode(headers, body, CODECS, max_bytes=max_bytes)
    except ACLDecodeError as exc:  # anything else fails the test
        error = exc
    if error is not None:
        assert error.field  # it always names what was wrong
        return
    # Whatever decode returns is a message the model accepts, and it encodes again.
    assert ACLMessage.model_validate(msg.model_dump()) == msg
    assert wire.decode(*wire.encode(msg, CODECS), CODECS) == msg


@BOUNDED
@given(garbage_headers, garbage_bodies)
def test_decode_of_garbage_only_raises_decode_errors(headers: dict[str, str], body: bytes) -> None:
    check_decode(headers, body)


@BOUNDED
@given(
    messages,
    st.dictionaries(garbage_names, garbage_text, max_size=4),
    st.lists(st.sampled_from(KNOWN_HEADERS), max_size=3),
    st.one_of(st.none(), garbage_bodies),
    st.one_of(st.none(), st.integers(0, 3000)),
)
def test_decode_of_damaged_messages_only_raises_decode_errors(
    msg: ACLMessage,
    replace: dict[str, str],
    remove: list[str],
    body: bytes | None,
    max_bytes: int | None,
) -> None:
    headers, good_body = wire.encode(msg, CODECS)
    headers.update(replace)
    for name in remove:
        headers.pop(name, None)
    check_decode(headers, good_body if body is None else body, max_bytes)


_HEADER_PIECES = st.sampled_from(
    ["a", "Z", "-", "nats-", "Nats-", "ce-", " ", "\t", "\x00", "é", ":"]
)
_piecewise = st.lists(_HEADER_PIECES, max_size=5).map("".join)


@BOUNDED
@given(
    messages,
    st.dictionaries(_piecewise, _piecewise, max_size=5),
    st.sampled_from([{}, {"Nats-Msg-Id": "m-1"}, {"nats-ttl": "5s", "NATS-X": " y "}]),
)
def test_quick_header_reading_equals_reading_header_by_header(
    msg: ACLMessage, extra: dict[str, str], server: dict[str, str]
) -> None:
    """`normalized_headers` takes a short way for usual headers: the same result as the long way."""
    headers, body = wire.encode(msg, CODECS)
    headers.update(extra)
    headers.update(server)
    outcomes = []
    for read in (header_block.normalized_headers, header_block._normalized_slowly):
        try:
            outcomes.append(read(headers, body))
        except ACLDecodeError as exc:
            outcomes.append((exc.field, str(exc)))
    assert outcomes[0] == outcomes[1]
    if isinstance(outcomes[0][0], dict):
        counted = {k: v for k, v in outcomes[0][0].items() if not k.startswith("nats-")}
        assert outcomes[0][1] == wire.encoded_size(counted, body)


_TOKEN_CHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
_token_names = st.one_of(
    st.sampled_from(KNOWN_HEADERS).map(lambda n: n.title()),
    st.sampled_from(KNOWN_HEADERS),
    st.text(_TOKEN_CHARS, min_size=1, max_size=12),
)


def _outcome(headers: Any, body: bytes) -> Any:
    try:
        return wire.decode(headers, body, CODECS)
    except ACLDecodeError as exc:
        return (type(exc), exc.field, str(exc))


@BOUNDED
@given(messages, st.dictionaries(_token_names, garbage_text, max_size=5))
def test_headers_a_backend_checked_decode_as_any_mapping_does(
    msg: ACLMessage, extra: dict[str, str]
) -> None:
    """`ParsedHeaders` skip only the token check, which their backend made: nothing else."""
    headers, body = wire.encode(msg, CODECS)
    headers.update(extra)
    assert _outcome(wire.ParsedHeaders(headers), body) == _outcome(headers, body)


@BOUNDED
@given(st.lists(st.datetimes(timezones=st.just(UTC)), min_size=1, max_size=4))
def test_time_text_is_isoformat_whatever_second_came_before(times: list[datetime]) -> None:
    """Times keep the text of their second from the last one: never the wrong second's."""
    for when in times:
        assert timestamps.format_time(when) == when.isoformat(timespec="microseconds")[:-6] + "Z"
        later = when.replace(microsecond=(when.microsecond + 1) % 1_000_000)
        assert timestamps.format_time(later) == later.isoformat(timespec="microseconds")[:-6] + "Z"


_ids_and_times = st.one_of(
    st.none(),  # as encode wrote it
    garbage_text,
    st.sampled_from(
        [
            " 019c13ec-9e00-73c1-9d2e-5b8f1c4a7e60",  # read stripped by the full way
            "019c13ec-9e00-73c1-9d2e-5b8f1c4a7e60\t",
            "2026-01-31T12:00:00.000000Z",
            "2026-01-31T12:00:00.123Z",  # a time as JavaScript writes it
            "2026-02-30T12:00:00.000000Z",  # no such day
            " 2026-01-31T12:00:00.000000Z",
            "a" * 129,
        ]
    ),
)
_server_headers = st.sampled_from(
    [
        {},
        {"Nats-Msg-Id": "m-1"},
        {"nats-ttl": "5s", "NATS-X": " y "},
        {"Nats-Msg-Id": "with space inside"},
        {"nats-bad name": "x"},  # not a token: refused
        {"nats-\x00": "x"},
        {"Nats-Msg-Id": ""},
    ]
)


@BOUNDED
@given(
    messages,
    _ids_and_times,
    _ids_and_times,
    _server_headers,
    st.one_of(st.none(), garbage_bodies),
    st.one_of(st.none(), st.integers(0, 3000)),
)
def test_an_envelope_seen_before_decodes_as_one_never_seen(
    msg: ACLMessage,
    ce_id: str | None,
    ce_time: str | None,
    server: dict[str, str],
    body: bytes | None,
    max_bytes: int | None,
) -> None:
    """Decoding keeps what it made of the headers that repeat (`aclbus.wire.repeats`).

    A block whose repeating part was seen before, with any id, time, broker headers, body or
    limit, gives what decoding it for the first time gives: the same message or the same error.
    """
    headers, good_body = wire.encode(msg, CODECS)
    wire.decode(headers, good_body, CODECS)  # the repeating part is now known
    if ce_id is not None:
        headers["ce-id"] = ce_id
    if ce_time is not None:
        headers["ce-time"] = ce_time
    headers.update(server)
    body = good_body if body is None else body

    def outcome() -> Any:
        try:
            return wire.decode(headers, body, CODECS, max_bytes=max_bytes)
        except ACLDecodeError as exc:
            return (type(exc), exc.field, str(exc))

    seen = outcome()
    decoding._REPEATS.clear()
    assert outcome() == seen


def test_a_handler_changing_its_message_does_not_change_the_next() -> None:
    msg = ACLMessage(
        performative="inform",
        sender_id="a",
        receiver_id="b",
        payload={"n": 1},
        headers={"traceparent": "00-1"},
        extensions={"lane": "x"},
    )
    first = wire.decode(*wire.encode(msg, CODECS), CODECS)
    first.headers["traceparent"] = "changed"
    first.extensions.clear()
    first.payload["n"] = 2
    again = wire.decode(*wire.encode(msg, CODECS), CODECS)
    assert again.headers == {"traceparent": "00-1"}
    assert again.extensions == {"lane": "x"}
    assert again.payload == {"n": 1}


def test_decoding_keeps_no_payload_alive() -> None:
    """The table of envelopes holds no body: a large payload is not kept by it."""
    msg = ACLMessage(performative="inform", sender_id="a", payload={"big": "x" * 100_000})
    wire.decode(*wire.encode(msg, CODECS), CODECS)
    assert len(decoding._REPEATS) > 0
    assert all(seen.fields["payload"] is None for seen in decoding._REPEATS._seen.values())
