"""The wire format: encode/decode, every decode error, and the examples of docs/wire-format.md."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from aclbus import wire
from aclbus.acl import ENVELOPE_EXTENSION_NAMES, ACLMessage, Performative
from aclbus.codec import CodecRegistry, EncodeError, JsonCodec
from aclbus.errors import ACLDecodeError, MalformedHeaders, MessageTooLarge, UnsupportedVersion

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-format.md"
T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
CODECS = CodecRegistry([JsonCodec()])


class TextCodec:
    content_type = "text/plain"

    def encode(self, payload: Any) -> bytes:
        return str(payload).encode()

    def decode(self, body: bytes) -> Any:
        return body.decode()


def full_message() -> ACLMessage:
    return ACLMessage(
        message_id="019c13ec-9e00-73c1-9d2e-5b8f1c4a7e60",
        correlation_id="conv-42",
        reply_to="alice-desk",
        timestamp=T0,
        ttl=60,
        priority=6,
        retry_count=2,
        sender_id="alice",
        receiver_id="bob",
        receivers=["carol", "dave"],
        message_type="task.translate",
        performative=Performative.REQUEST,
        payload={"text": "Bonjour le monde \U0001f30d", "n": [1, 2.5, None, True]},
        topic="orders.eu.created",
        routing_key="customer 17",
        reply_with="alice-q1",
        in_reply_to="earlier-q",
        reply_by=T0 + timedelta(minutes=1),
        protocol="fipa-request",
        language="json",
        ontology="translation",
        hops=3,
        caused_by=("m1", "m2", "m3"),
        acl_version="1.0",
        headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        extensions={"deadline-policy": "strict"},
    )


def minimal_headers(**extra: str) -> dict[str, str]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "m-1",
        "ce-source": "alice",
        "ce-type": "fipa.acl.inform",
    }
    headers.update(extra)
    return headers


def decode_error(headers: dict[str, str], body: bytes = b"", **kw: Any) -> ACLDecodeError:
    with pytest.raises(ACLDecodeError) as exc:
        wire.decode(headers, body, CODECS, **kw)
    return exc.value


# -- encode ------------------------------------------------------------------------------------


def test_encode_writes_every_field_to_its_header() -> None:
    headers, body = wire.encode(full_message(), CODECS)
    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": "019c13ec-9e00-73c1-9d2e-5b8f1c4a7e60",
        "ce-source": "alice",
        "ce-type": "fipa.acl.request",
        "ce-time": "2026-01-31T12:00:00.000000Z",
        "content-type": "application/json",
        "acl-version": "1.0",
        "acl-receiver-id": "bob",
        "acl-receivers": "carol,dave",
        "acl-priority": "6",
        "acl-retry-count": "2",
        "acl-ttl": "60.0",
        "acl-reply-by": "2026-01-31T12:01:00.000000Z",
        "acl-correlation-id": "conv-42",
        "acl-reply-to": "alice-desk",
        "acl-reply-with": "alice-q1",
        "acl-in-reply-to": "earlier-q",
        "acl-protocol": "fipa-request",
        "acl-message-type": "task.translate",
        "acl-topic": "orders.eu.created",
        "acl-routing-key": "customer 17",
        "acl-language": "json",
        "acl-ontology": "translation",
        "acl-hops": "3",
        "acl-caused-by": "m1,m2,m3",
        "acl-deadline-policy": "strict",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    assert body == '{"text":"Bonjour le monde \U0001f30d","n":[1,2.5,null,true]}'.encode()


def test_encode_leaves_defaults_out() -> None:
    msg = ACLMessage(performative="inform", sender_id="alice", timestamp=T0)
    headers, body = wire.encode(msg, CODECS)
    assert set(headers) == {
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "content-type",
        "acl-version",
    }
    assert body == b"null"


def test_every_header_is_lower_case_ascii() -> None:
    headers, _ = wire.encode(full_message(), CODECS)
    for name, value in headers.items():
        assert name == name.lower()
        assert name.isascii()
        assert value.isascii()
        assert value == value.strip()
        assert "\n" not in value


def test_every_envelope_header_is_known_to_the_extension_check() -> None:
    headers, _ = wire.encode(full_message().model_copy(update={"extensions": {}}), CODECS)
    acl_headers = {name[4:] for name in headers if name.startswith("acl-")}
    assert acl_headers == ENVELOPE_EXTENSION_NAMES


@pytest.mark.parametrize(
    ("when", "text"),
    [
        (datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC), "2026-01-31T12:00:00.123456Z"),
        (
            datetime(2026, 1, 31, 14, 0, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-31T12:00:00.000000Z",
        ),
        (datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "0999-01-02T03:04:05.000000Z"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000000Z"),
    ],
)
def test_times_are_rfc3339_utc_with_microseconds(when: datetime, text: str) -> None:
    msg = ACLMessage(performative="inform", sender_id="a", timestamp=when, reply_by=when)
    headers, _ = wire.encode(msg, CODECS)
    assert headers["ce-time"] == headers["acl-reply-by"] == text
    assert wire.decode(headers, b"", CODECS).timestamp == when


def test_encode_with_another_codec() -> None:
    codecs = CodecRegistry([JsonCodec(), TextCodec()])
    msg = ACLMessage(performative="inform", sender_id="a", payload="hello")
    headers, body = wire.encode(msg, codecs, content_type="text/plain")
    assert headers["content-type"] == "text/plain"
    assert body == b"hello"
    assert wire.decode(headers, body, codecs).payload == "hello"


def test_encode_with_an_unknown_content_type_is_an_encode_error() -> None:
    msg = ACLMessage(performative="inform", sender_id="a")
    with pytest.raises(EncodeError, match="no codec for content type 'application/cbor'"):
        wire.encode(msg, CODECS, content_type="application/cbor")


def test_encode_refuses_a_payload_json_cannot_hold() -> None:
    msg = ACLMessage(performative="inform", sender_id="a", payload={"x": float("nan")})
    with pytest.raises(EncodeError):
        wire.encode(msg, CODECS)


def test_encode_refuses_a_message_over_max_bytes() -> None:
    msg = full_message()
    headers, body = wire.encode(msg, CODECS)
    size = wire.encoded_size(headers, body)
    assert wire.encode(msg, CODECS, max_bytes=size) == (headers, body)
    with pytest.raises(MessageTooLarge) as exc:
        wire.encode(msg, CODECS, max_bytes=size - 1)
    assert (exc.value.size, exc.value.limit) == (size, size - 1)
    assert "ACLBUS_MAX_MESSAGE_BYTES" in str(exc.value)


def test_encoded_size_is_the_nats_header_block_plus_body() -> None:
    headers, body = wire.encode(full_message(), CODECS)
    block = "NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    assert wire.encoded_size(headers, body) == len(block.encode()) + len(body)
    assert wire.encoded_size({"k": "\u00e9"}, b"") == 12 + 1 + 2 + 4  # UTF-8 bytes, not chars


# -- round trip --------------------------------------------------------------------------------


def test_round_trip_of_a_full_message() -> None:
    msg = full_message()
    assert wire.decode(*wire.encode(msg, CODECS), CODECS) == msg


def test_round_trip_of_a_minimal_message() -> None:
    msg = ACLMessage(performative="cfp", sender_id="alice")
    assert wire.decode(*wire.encode(msg, CODECS), CODECS) == msg


def test_round_trip_of_a_reply() -> None:
    reply = full_message().reply("inform", {"text": "Hello world"}, sender_id="carol")
    decoded = wire.decode(*wire.encode(reply, CODECS), CODECS)
    assert decoded == reply
    assert decoded.in_reply_to == "alice-q1"
    assert decoded.receiver_id == "alice-desk"


@pytest.mark.parametrize("performative", list(Performative))
def test_every_performative_round_trips_through_ce_type(performative: Performative) -> None:
    msg = ACLMessage(performative=performative, sender_id="a")
    headers, body = wire.encode(msg, CODECS)
    assert headers["ce-type"] == f"fipa.acl.{performative.value}"
    assert wire.decode(headers, body, CODECS).performative is performative


# -- decode: what a non-Python writer may send -------------------------------------------------


def test_decode_a_minimal_message_fills_the_defaults() -> None:
    before = datetime.now(UTC)
    msg = wire.decode(minimal_headers(), b"", CODECS)
    assert msg.message_id == "m-1"
    assert msg.sender_id == "alice"
    assert msg.performative is Performative.INFORM
    assert msg.payload is None
    assert before <= msg.timestamp <= datetime.now(UTC)
    assert msg.acl_version == "1.0"
    assert msg.priority == 4
    assert msg.retry_count == 0
    assert msg.ttl is None
    assert msg.headers == {}
    assert msg.extensions == {}


def test_decode_gives_every_field_and_fresh_containers() -> None:
    first = wire.decode(minimal_headers(), b"", CODECS)
    second = wire.decode(minimal_headers(), b"", CODECS)
    assert first.model_fields_set == set(ACLMessage.model_fields)
    assert first.headers is not second.headers
    assert first.extensions is not second.extensions


def test_header_names_are_case_insensitive() -> None:
    headers = {
        "Ce-Specversion": "1.0",
        "CE-ID": "m-1",
        "ce-Source": "alice",
        "Ce-Type": "fipa.acl.agree",
        "Content-Type": "Application/JSON; charset=utf-8",
        "Acl-Priority": "7",
        "ACL-RECEIVER-ID": "bob",
        "X-Tenant": "t1",
        "Acl-Future-Field": "kept",
    }
    msg = wire.decode(headers, b'{"ok":true}', CODECS)
    assert (msg.message_id, msg.sender_id, msg.performative) == ("m-1", "alice", "agree")
    assert msg.priority == 7
    assert msg.receiver_id == "bob"
    assert msg.payload == {"ok": True}
    assert msg.headers == {"x-tenant": "t1"}
    assert msg.extensions == {"future-field": "kept"}


def test_spaces_around_values_are_stripped() -> None:
    msg = wire.decode(
        minimal_headers(**{"acl-priority": " 7 ", "acl-language": "\tjson "}), b"", CODECS
    )
    assert msg.priority == 7
    assert msg.language == "json"


def test_an_application_header_repeated_with_the_same_value_is_fine() -> None:
    msg = wire.decode(minimal_headers(**{"x-tenant": "t1", "X-Tenant": "t1"}), b"", CODECS)
    assert msg.headers == {"x-tenant": "t1"}


def test_a_header_repeated_with_another_value_is_refused() -> None:
    assert decode_error(minimal_headers(**{"CE-ID": "m-2"})).field == "ce-id"
    assert decode_error(minimal_headers(**{"x-tenant": "a", "X-TENANT": "b"})).field == "x-tenant"


@pytest.mark.parametrize(
    "name",
    ["CE-ID", "Ce-Source", "CE-TYPE", "Content-Type", "ACL-RECEIVER-ID", "Acl-Future", "ACLBUS-X"],
)
def test_an_envelope_header_given_twice_is_refused_whatever_its_values(name: str) -> None:
    """``ce-*``, ``acl-*``, ``aclbus-*`` and ``content-type`` appear once: a second copy, in
    any case, could make two readers see two messages (a spoofed ``ce-source``)."""
    headers = minimal_headers(
        **{"content-type": "application/json", "acl-future": "x", "acl-receiver-id": "bob"}
    )
    headers["aclbus-x"] = "y"
    headers[name] = headers[name.lower()]  # the same value: still refused
    error = decode_error(headers, b"{}")
    assert error.field == name.lower()
    assert "more than once" in error.problem
    assert isinstance(error, MalformedHeaders)


@pytest.mark.parametrize(
    "name",
    ["bad name", "ce-s\u00f6urce", "", "x\x00y", "nats-x y", "ce-foo bar", "x:y", " ce-id", "a\tb"],
)
def test_a_header_name_that_is_not_a_token_is_refused(name: str) -> None:
    """Even in the ``nats-`` and ``ce-`` namespaces decode otherwise ignores (RFC 7230 token)."""
    error = decode_error(minimal_headers(**{name: "v"}), b"{}")
    assert isinstance(error, MalformedHeaders)
    assert "not a valid header name" in error.problem
    assert error.field.isprintable()


def test_repeats_of_the_servers_nats_headers_are_left_to_it() -> None:
    headers = minimal_headers(**{"Nats-Msg-Id": "a", "nats-msg-id": "b"})
    assert wire.decode(headers, b"", CODECS).headers == {}


def test_every_token_character_is_a_valid_header_name() -> None:
    headers = minimal_headers(**{"nats-!#$%&'*+-.^_`|~09azAZ": "v"})
    assert wire.decode(headers, b"", CODECS).headers == {}


def test_headers_read_from_a_block_carry_its_defects_to_decode() -> None:
    """A backend that read a raw block hands over what a dict cannot show (two lines of one
    name, a name that was not text); decode refuses the message, naming the header."""
    block = wire.ParsedHeaders(minimal_headers())
    assert wire.decode(block, b"", CODECS).sender_id == "alice"
    block.defect = MalformedHeaders("ce-source", "given more than once")
    error = decode_error(block)
    assert (error.field, error.problem) == ("ce-source", "given more than once")
    assert error is not block.defect  # a fresh error each time: the block may be read again
    empty = wire.ParsedHeaders()
    empty.defect = MalformedHeaders("ce-sourc\\xff", "is not a valid header name")
    assert decode_error(empty).field == "ce-sourc\\xff"  # not "headers: missing"


def test_nats_and_other_cloudevents_headers_are_ignored() -> None:
    headers = minimal_headers(
        **{"Nats-Msg-Id": "m-1", "Nats-Stream": "ACLBUS_AGENT", "ce-subject": "x", "ce-foo": "y"}
    )
    msg = wire.decode(headers, b"", CODECS)
    assert msg.headers == {}
    assert msg.extensions == {}


def test_decode_reads_optional_headers_in_their_accepted_forms() -> None:
    msg = wire.decode(
        minimal_headers(
            **{
                "ce-time": "2026-01-31T13:00:00.123456789+01:00",  # Go's RFC3339Nano, an offset
                "acl-reply-by": "2026-01-31 12:01:00z",
                "acl-ttl": "30",
                "acl-priority": "09",
                "acl-retry-count": "2147483647",
                "acl-receivers": "b,c",
            }
        ),
        b"",
        CODECS,
    )
    assert msg.timestamp == datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)
    assert msg.reply_by == datetime(2026, 1, 31, 12, 1, tzinfo=UTC)
    assert msg.ttl == 30.0
    assert msg.priority == 9
    assert msg.retry_count == 2**31 - 1
    assert msg.receivers == ("b", "c")


@pytest.mark.parametrize("ttl", ["1", "1.0", "60", "1.5", "1e+16", "1E3", "12345678901234567890"])
def test_valid_ttl_forms(ttl: str) -> None:
    assert wire.decode(minimal_headers(**{"acl-ttl": ttl}), b"", CODECS).ttl == float(ttl)


def test_a_newer_minor_version_decodes_and_keeps_unknown_acl_headers() -> None:
    headers = minimal_headers(
        **{"acl-version": "1.7", "acl-deadline-policy": "strict", "acl-x_y": "1"}
    )
    msg = wire.decode(headers, b"", CODECS)
    assert msg.acl_version == "1.7"
    assert msg.extensions == {"deadline-policy": "strict", "x_y": "1"}
    again, _ = wire.encode(msg, CODECS)  # forwarded: the unknown headers go out unchanged
    assert again["acl-version"] == "1.7"
    assert again["acl-deadline-policy"] == "strict"
    assert again["acl-x_y"] == "1"


@pytest.mark.parametrize("version", ["1.0", "01.0", "0001.9999"])
def test_major_version_one_in_any_spelling(version: str) -> None:
    assert (
        wire.decode(minimal_headers(**{"acl-version": version}), b"", CODECS).acl_version == version
    )


@pytest.mark.parametrize("version", ["2.0", "0.9", "10.0", "11.1"])
def test_an_unknown_major_version_is_unsupported(version: str) -> None:
    with pytest.raises(UnsupportedVersion) as exc:
        wire.decode(minimal_headers(**{"acl-version": version}), b"", CODECS)
    assert exc.value.field == "acl-version"
    assert exc.value.version == version
    assert isinstance(exc.value, ACLDecodeError)
    assert "upgrade aclbus" in str(exc.value)


def test_unsupported_version_is_found_before_other_problems() -> None:
    headers = {"acl-version": "2.0", "ce-type": "fipa.acl.new-act-of-v2"}
    with pytest.raises(UnsupportedVersion):
        wire.decode(headers, b"not json either", CODECS)


def test_empty_body_is_a_null_payload_and_json_is_the_default() -> None:
    assert wire.decode(minimal_headers(), b"", CODECS).payload is None
    assert wire.decode(minimal_headers(), b"[1]", CODECS).payload == [1]


# -- decode errors: each one names its header --------------------------------------------------

MISSING = ["ce-specversion", "ce-id", "ce-source", "ce-type"]


@pytest.mark.parametrize("header", MISSING)
def test_a_missing_required_header_is_named(header: str) -> None:
    headers = minimal_headers()
    del headers[header]
    error = decode_error(headers)
    assert error.field == header
    assert "missing" in error.problem


BAD_HEADERS: list[tuple[str, str]] = [
    ("ce-specversion", "0.3"),
    ("ce-specversion", ""),
    ("ce-id", ""),
    ("ce-id", "a b"),
    ("ce-id", "x" * 129),
    ("ce-source", "alice.smith"),
    ("ce-source", "al\u00efce"),
    ("ce-type", "inform"),
    ("ce-type", "fipa.acl.shout"),
    ("ce-type", "fipa.acl.INFORM"),
    ("ce-type", "fipa.acl."),
    ("ce-time", "yesterday"),
    ("ce-time", "2026-01-31T12:00:00"),
    ("ce-time", "2026-01-31"),
    ("ce-time", "2026-13-01T00:00:00Z"),
    ("ce-time", "2026-01-31T23:59:60Z"),
    ("ce-time", "20260131T120000Z"),
    ("ce-time", "2026-W05-6T12:00:00Z"),
    ("ce-time", "\u0662026-01-31T12:00:00Z"),
    ("ce-time", "0001-01-01T00:00:00+01:00"),
    ("acl-reply-by", "soon"),
    ("acl-version", "1"),
    ("acl-version", "one.zero"),
    ("acl-version", "1.0.0"),
    ("acl-priority", "10"),
    ("acl-priority", "-1"),
    ("acl-priority", "high"),
    ("acl-priority", "5.0"),
    ("acl-priority", "+5"),
    ("acl-priority", "\u0665"),
    ("acl-priority", ""),
    ("acl-retry-count", "-1"),
    ("acl-retry-count", "2147483648"),
    ("acl-retry-count", "9" * 5000),
    ("acl-ttl", "0.5"),
    ("acl-ttl", "0"),
    ("acl-ttl", "-60"),
    ("acl-ttl", "inf"),
    ("acl-ttl", "nan"),
    ("acl-ttl", "1e400"),
    ("acl-ttl", "1_000"),
    ("acl-ttl", "+60"),
    ("acl-ttl", ".5e1"),
    ("acl-ttl", "\u0666\u0660"),
    ("acl-ttl", "sixty"),
    ("acl-ttl", ""),
    ("acl-receiver-id", "bob smith"),
    ("acl-receivers", "bob,,carol"),
    ("acl-receivers", "bob, carol"),
    ("acl-receivers", ""),
    ("acl-correlation-id", "conv*"),
    ("acl-reply-to", "a>"),
    ("acl-reply-with", "q.1"),
    ("acl-in-reply-to", "q 1"),
    ("acl-protocol", "fipa request"),
    ("acl-message-type", "task..x"),
    ("acl-topic", "orders.*"),
    ("acl-routing-key", "caf\u00e9"),
    ("acl-routing-key", ""),
    ("acl-language", "x" * 1025),
    ("acl-ontology", "a\x00b"),
    ("acl-future", "caf\u00e9"),
    ("acl-", "empty name"),
    ("x-app", "caf\u00e9"),
    ("x-app", ""),
    ("x.app", "dotted name"),
]


@pytest.mark.parametrize(("header", "value"), BAD_HEADERS)
def test_a_bad_header_is_named(header: str, value: str) -> None:
    error = decode_error(minimal_headers(**{header: value}))
    assert error.field == header


def test_errors_quote_the_bad_value() -> None:
    error = decode_error(minimal_headers(**{"acl-priority": "high"}))
    assert "'high'" in error.problem
    assert str(error) == f"acl-priority: {error.problem}"


def test_a_huge_bad_value_is_cut_in_the_message() -> None:
    error = decode_error(minimal_headers(**{"ce-type": "x" * 100_000}))
    assert len(str(error)) < 300


def test_unknown_content_type_is_named() -> None:
    error = decode_error(minimal_headers(**{"content-type": "application/msgpack"}), b"\x80")
    assert error.field == "content-type"
    assert decode_error(minimal_headers(**{"content-type": ""})).field == "content-type"


@pytest.mark.parametrize("body", [b"{", b"\xff", b"NaN", b"{'a': 1}", b"1 2"])
def test_malformed_json_body_is_named(body: bytes) -> None:
    assert decode_error(minimal_headers(), body).field == "body"


def test_no_headers_at_all() -> None:
    assert decode_error({}, b"{}").field == "headers"
    with pytest.raises(ACLDecodeError) as exc:
        wire.decode(None, b"{}", CODECS)
    assert exc.value.field == "headers"


def test_non_text_header_values_are_refused() -> None:
    headers: dict[str, Any] = minimal_headers()
    headers["acl-priority"] = 5
    assert decode_error(headers).field == "acl-priority"
    headers = minimal_headers()
    headers["ce-id"] = ["m-1", "m-2"]  # a multi-valued header from some client
    assert decode_error(headers).field == "ce-id"


def test_a_codec_that_raises_something_else_is_still_a_decode_error() -> None:
    class Broken(TextCodec):
        def decode(self, body: bytes) -> Any:
            raise RuntimeError("bug in a plugin")

    codecs = CodecRegistry([JsonCodec(), Broken()])
    with pytest.raises(ACLDecodeError) as exc:
        wire.decode(minimal_headers(**{"content-type": "text/plain"}), b"x", codecs)
    assert exc.value.field == "message"
    assert "RuntimeError" in exc.value.problem


# -- size limit --------------------------------------------------------------------------------


def test_decode_size_limit_matches_encode() -> None:
    msg = full_message()
    headers, body = wire.encode(msg, CODECS)
    size = wire.encoded_size(headers, body)
    assert wire.decode(headers, body, CODECS, max_bytes=size) == msg
    error = decode_error(headers, body, max_bytes=size - 1)
    assert error.field == "message"
    assert str(size) in error.problem
    assert str(size - 1) in error.problem


def test_a_huge_body_is_refused_before_it_is_parsed() -> None:
    error = decode_error(minimal_headers(), b"{" * 2_000_000, max_bytes=1 << 20)
    assert error.field == "message"
    assert "body alone" in error.problem


def test_nats_headers_added_by_the_backend_do_not_count() -> None:
    headers, body = wire.encode(full_message(), CODECS)
    size = wire.encoded_size(headers, body)
    headers["Nats-Msg-Id"] = "019c13ec-9e00-73c1-9d2e-5b8f1c4a7e60:bob"
    assert wire.decode(headers, body, CODECS, max_bytes=size).sender_id == "alice"


# -- the examples of docs/wire-format.md -------------------------------------------------------


def doc_block(name: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"<!-- example: {re.escape(name)} -->\n```\w*\n(.*?)```", text, re.S)
    assert match, f"example {name!r} not found in {DOC}"
    return match.group(1)


def parse_frame(name: str) -> tuple[list[str], dict[str, str], bytes]:
    """Parse an HPUB/HMSG example into its control line, headers and body, checking sizes."""
    lines = doc_block(name).splitlines()
    assert all(line.endswith("\\r\\n") for line in lines), "every line must end with \\r\\n"
    raw = "".join(line[: -len("\\r\\n")] + "\r\n" for line in lines).encode()
    control, rest = raw.split(b"\r\n", 1)
    words = control.decode().split()
    header_bytes, total_bytes = int(words[-2]), int(words[-1])
    block, payload = rest[:header_bytes], rest[header_bytes:]
    assert block.startswith(b"NATS/1.0\r\n")
    assert block.endswith(b"\r\n\r\n")
    assert payload.endswith(b"\r\n")
    body = payload[:-2]
    assert total_bytes == header_bytes + len(body)
    headers = dict(line.split(": ", 1) for line in block.decode().split("\r\n")[1:] if line)
    return words, headers, body


def parse_cli(name: str) -> tuple[list[str], dict[str, str], bytes]:
    """Parse a ``nats pub``/``nats req`` example the way the CLI does (split at the first ':')."""
    words = shlex.split(doc_block(name).replace("\\\n", " "))
    args: list[str] = []
    headers: dict[str, str] = {}
    i = 0
    while i < len(words):
        if words[i] == "-H":
            name_, value = words[i + 1].split(":", 1)
            # nats.go writes canonical MIME names: ce-id -> Ce-Id
            headers["-".join(p.capitalize() for p in name_.strip().split("-"))] = value.strip()
            i += 2
        else:
            args.append(words[i])
            i += 1
    return args, headers, args[-1].encode()


def doc_request() -> ACLMessage:
    return ACLMessage(
        message_id="019c13ec-9e00-73c1-9d2e-5b8f1c4a7e60",
        timestamp=T0,
        sender_id="alice",
        receiver_id="bob",
        performative="request",
        payload={"text": "Bonjour le monde", "to": "en"},
        correlation_id="conv-42",
        reply_with="alice-q1",
        protocol="fipa-request",
        language="json",
        ontology="translation",
        message_type="task.translate",
        priority=6,
        ttl=60,
        reply_by=T0 + timedelta(minutes=1),
        headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    )


def test_doc_hpub_frame_is_what_encode_writes() -> None:
    words, headers, body = parse_frame("hpub")
    assert words[:3] == ["HPUB", "aclbus.agent.bob", "_INBOX.ack1"]
    expected_headers, expected_body = wire.encode(doc_request(), CODECS)
    expected_headers["Nats-Msg-Id"] = doc_request().message_id
    assert headers == expected_headers
    assert list(headers) == list(expected_headers)  # the same order, too
    assert body == expected_body
    assert int(words[-1]) == wire.encoded_size(headers, body)
    assert wire.decode(headers, body, CODECS) == doc_request()


def test_doc_nats_pub_command_sends_the_same_message() -> None:
    args, headers, body = parse_cli("nats-pub")
    assert args[:3] == ["nats", "pub", "--jetstream"]
    assert args[3] == "aclbus.agent.bob"
    assert headers["Nats-Msg-Id"] == headers["Ce-Id"]
    assert wire.decode(headers, body, CODECS) == doc_request()


def test_doc_nats_req_command_sends_the_same_question() -> None:
    args, headers, body = parse_cli("nats-req")
    assert args[:3] == ["nats", "req", "aclbus.rpc.bob"]
    msg = wire.decode(headers, body, CODECS)
    expected = doc_request().model_copy(
        update={"ttl": None, "reply_by": None, "message_type": None, "headers": {}}
    )
    assert msg == expected


def test_doc_reply_frame_is_what_reply_and_encode_write() -> None:
    words, headers, body = parse_frame("hmsg-reply")
    assert words[:3] == ["HMSG", "_INBOX.x7Kq2.1", "1"]
    decoded = wire.decode(headers, body, CODECS)
    reply = doc_request().reply(
        "inform",
        {"text": "Hello world"},
        message_id=decoded.message_id,
        timestamp=datetime(2026, 1, 31, 12, 0, 1, 250000, tzinfo=UTC),
    )
    assert decoded == reply
    expected_headers, expected_body = wire.encode(reply, CODECS)
    assert list(headers.items()) == list(expected_headers.items())
    assert body == expected_body


def test_doc_lists_every_header_and_performative() -> None:
    text = DOC.read_text(encoding="utf-8")
    headers, _ = wire.encode(full_message(), CODECS)
    for name in headers:
        if name.startswith(("ce-", "acl-")) and name != "acl-deadline-policy":
            assert f"`{name}`" in text, name
    for p in Performative:
        assert f"`{p.value}`" in text, p
    assert "`ACLBUS_AGENT`" in text


def test_hops_and_causation_are_checked_on_decode() -> None:
    assert decode_error(minimal_headers(**{"acl-hops": "256"})).field == "acl-hops"
    assert decode_error(minimal_headers(**{"acl-hops": "-1"})).field == "acl-hops"
    assert decode_error(minimal_headers(**{"acl-caused-by": "a,b.c"})).field == "acl-caused-by"
    too_many = ",".join(f"m{i}" for i in range(17))
    exc = decode_error(minimal_headers(**{"acl-caused-by": too_many}))
    assert exc.field == "acl-caused-by"
    assert "17" in str(exc)
    msg = wire.decode(minimal_headers(**{"acl-hops": "2", "acl-caused-by": "a,b"}), b"null", CODECS)
    assert (msg.hops, msg.caused_by) == (2, ("a", "b"))
