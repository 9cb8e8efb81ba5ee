"""The JSON codec and the codec registry."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from aclbus.codec import JSON, Codec, CodecRegistry, EncodeError, JsonCodec
from aclbus.errors import ACLBusError, ACLDecodeError


class Point(BaseModel):
    x: float
    y: float


class TextCodec:
    """A second codec, as a plugin would add."""

    content_type = "text/plain"

    def encode(self, payload: Any) -> bytes:
        return str(payload).encode()

    def decode(self, body: bytes) -> Any:
        return body.decode()


# -- JsonCodec ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "body"),
    [
        (None, b"null"),
        (True, b"true"),
        (0, b"0"),
        (-(2**63), b"-9223372036854775808"),
        (2**64 - 1, b"18446744073709551615"),
        (1.5, b"1.5"),
        ("h\u00e9llo \U0001f600", '"h\u00e9llo \U0001f600"'.encode()),
        ([1, "a", None], b'[1,"a",null]'),
        ({"a": {"b": [1, 2]}}, b'{"a":{"b":[1,2]}}'),
    ],
)
def test_json_encodes_compactly_and_round_trips(payload: Any, body: bytes) -> None:
    codec = JsonCodec()
    assert codec.encode(payload) == body
    assert codec.decode(body) == payload


def test_json_encodes_pydantic_models_sets_and_tuples() -> None:
    codec = JsonCodec()
    assert codec.decode(codec.encode(Point(x=1, y=2.5))) == {"x": 1.0, "y": 2.5}
    assert codec.decode(codec.encode({"s": {3, 1, 2}})) == {"s": [1, 2, 3]}
    assert codec.decode(codec.encode((1, 2))) == [1, 2]
    assert codec.decode(codec.encode({1: "a"})) == {"1": "a"}


def test_empty_body_is_none() -> None:
    assert JsonCodec().decode(b"") is None


@pytest.mark.parametrize(
    "payload",
    [
        float("nan"),
        float("inf"),
        -float("inf"),
        [1, {"deep": [float("nan")]}],
        {"k": (None, float("inf"))},
        {float("inf")},
        Point(x=float("nan"), y=0),
    ],
)
def test_json_refuses_nan_and_infinity_instead_of_writing_null(payload: Any) -> None:
    with pytest.raises(EncodeError, match="not a number"):
        JsonCodec().encode(payload)


@pytest.mark.parametrize(
    "payload",
    [object(), 2**64, -(2**63) - 1, "lone \ud800 surrogate", {"k": b"bytes"}],
)
def test_json_refuses_what_json_cannot_hold(payload: Any) -> None:
    with pytest.raises(EncodeError, match="cannot be encoded as JSON"):
        JsonCodec().encode(payload)


def test_encode_error_is_an_aclbus_type_error() -> None:
    with pytest.raises(EncodeError) as exc:
        JsonCodec().encode(object())
    assert isinstance(exc.value, ACLBusError)
    assert isinstance(exc.value, TypeError)


@pytest.mark.parametrize(
    "body",
    [b"{", b"{'a': 1}", b"NaN", b"Infinity", b"1e400", b"\xff\xfe", b"[1,]", b"null null", b" "],
)
def test_malformed_json_is_a_decode_error_on_the_body(body: bytes) -> None:
    with pytest.raises(ACLDecodeError) as exc:
        JsonCodec().decode(body)
    assert exc.value.field == "body"
    assert "malformed JSON" in exc.value.problem


def test_json_codec_is_a_codec() -> None:
    assert isinstance(JsonCodec(), Codec)
    assert isinstance(TextCodec(), Codec)
    assert JsonCodec.content_type == JSON == "application/json"


# -- CodecRegistry -----------------------------------------------------------------------------


def test_the_first_codec_is_the_default() -> None:
    json_codec, text_codec = JsonCodec(), TextCodec()
    registry = CodecRegistry([json_codec, text_codec])
    assert registry.default is json_codec
    assert registry.get(None) is json_codec
    assert registry.get("text/plain") is text_codec
    assert list(registry) == ["application/json", "text/plain"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        " application/json ",
    ],
)
def test_content_type_lookup_ignores_case_and_parameters(content_type: str) -> None:
    registry = CodecRegistry([JsonCodec()])
    assert isinstance(registry.get(content_type), JsonCodec)
    assert content_type in registry


def test_unknown_content_type_is_a_decode_error_naming_the_header() -> None:
    registry = CodecRegistry([JsonCodec()])
    with pytest.raises(ACLDecodeError) as exc:
        registry.get("application/msgpack")
    assert exc.value.field == "content-type"
    assert "application/json" in exc.value.problem  # says which ones it knows
    assert "application/msgpack" not in registry
    assert 42 not in registry


def test_registering_a_content_type_twice_is_an_error() -> None:
    registry = CodecRegistry([JsonCodec()])
    with pytest.raises(ACLBusError, match="already registered"):
        registry.register(JsonCodec())


def test_an_empty_registry_has_no_default() -> None:
    registry = CodecRegistry()
    with pytest.raises(ACLBusError, match="no codec"):
        _ = registry.default
    with pytest.raises(ACLDecodeError, match="known: none"):
        registry.get("application/json")


def test_the_core_registers_json_through_its_hook() -> None:
    from aclbus import codec

    registered: list[Codec] = []
    codec.aclbus_register_codecs(registered.append)
    assert [type(c) for c in registered] == [JsonCodec]
