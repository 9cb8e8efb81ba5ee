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
    [object(), "lone \ud800 surrogate", {"k": b"bytes"}, [10**5000]],
)
def test_json_refuses_what_json_cannot_hold(payload: Any) -> None:
    with pytest.raises(EncodeError, match="cannot be encoded as JSON"):
        JsonCodec().encode(payload)


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"k": (None, float("inf"))}, "/k/1"),
        ([0, {"a/b": float("nan")}], "/1/a~1b"),
        ({"big": 10**30, "x": -float("inf")}, "/x"),  # the slower path for big integers too
        (float("nan"), "the whole payload"),
    ],
)
def test_json_refusal_of_a_non_finite_number_says_where_it_is(payload: Any, where: str) -> None:
    with pytest.raises(EncodeError, match="not a number") as exc:
        JsonCodec().encode(payload)
    assert where in str(exc.value)


@pytest.mark.parametrize(
    "payload",
    [
        2**64,
        -(2**63) - 1,
        10**400,
        -(10**400),
        [1, {"deep": [2**64 - 1, 2**64, "x"]}],
        {"model": Point(x=1, y=2), "n": 10**20},
        {"set": {10**20, 1}},
        (10**19, 10**21),
    ],
    ids=["2^64", "-2^63-1", "10^400", "-10^400", "nested", "model", "set", "tuple"],
)
def test_integers_of_any_size_are_written_and_read_exactly(payload: Any) -> None:
    """JSON integers have no size limit; orjson's 64 bits are not the format's."""
    codec = JsonCodec()
    decoded = codec.decode(codec.encode(payload))
    expected = _as_json(payload)
    assert decoded == expected
    assert [type(n) for n in _numbers(decoded)] == [type(n) for n in _numbers(expected)]


def test_big_integers_are_written_as_plain_digits() -> None:
    codec = JsonCodec()
    assert codec.encode(10**30) == b"1" + b"0" * 30
    assert codec.encode({10**30: 2**64}) == b'{"1' + b"0" * 30 + b'":18446744073709551616}'
    assert codec.encode([True, 2**70]) == b"[true,1180591620717411303424]"


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b"18446744073709551616", 2**64),
        (b"[-9223372036854775809]", [-(2**63) - 1]),
        (b"1" + b"0" * 400, 10**400),
        (b'{"a": [1, -' + b"9" * 30 + b"]}", {"a": [1, -int("9" * 30)]}),
        (b'{"a": "123456789012345678901234567890"}', {"a": "123456789012345678901234567890"}),
        (b"123456789012345678901234567890e-10", 1.2345678901234568e19),
        (b"18446744073709551615", 2**64 - 1),
    ],
    ids=["2^64", "-2^63-1", "10^400", "nested", "in-a-string", "long-float", "2^64-1"],
)
def test_big_integers_in_a_body_are_read_exactly(body: bytes, value: Any) -> None:
    decoded = JsonCodec().decode(body)
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"1e400", "the whole body"),
        (b"[1, -1e400]", "/1"),
        (b'{"a": {"b~/c": [0, 1.8e308]}}', "/a/b~0~1c/1"),
        (b'{"n": 1' + b"0" * 400 + b', "f": 1e999}', "/f"),
    ],
    ids=["top", "array", "escaped-keys", "after-a-big-integer"],
)
def test_a_number_beyond_float_range_is_refused_naming_where_it_is(body: bytes, where: str) -> None:
    with pytest.raises(ACLDecodeError) as exc:
        JsonCodec().decode(body)
    assert exc.value.field == "body"
    assert where in exc.value.problem
    assert "beyond the range of a 64-bit float" in exc.value.problem


@pytest.mark.parametrize(
    "body",
    [
        b"[1" + b"0" * 5000 + b"]",
        b'["\\ud800", 1' + b"0" * 30 + b"]",
        b"[NaN, 1" + b"0" * 30 + b"]",
    ],
)
def test_the_exact_reading_refuses_what_orjson_refuses(body: bytes) -> None:
    """The slower reader behind big integers accepts no more than orjson does otherwise."""
    with pytest.raises(ACLDecodeError) as exc:
        JsonCodec().decode(body)
    assert exc.value.field == "body"


def _as_json(value: Any) -> Any:
    """What JSON makes of ``value``: tuples and sets as lists, models as dicts."""
    if isinstance(value, BaseModel):
        return _as_json(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_as_json(v) for v in value)
    if isinstance(value, list | tuple):
        return [_as_json(v) for v in value]
    return value


def _numbers(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []


def test_encode_error_is_an_aclbus_type_error() -> None:
    with pytest.raises(EncodeError) as exc:
        JsonCodec().encode(object())
    assert isinstance(exc.value, ACLBusError)
    assert isinstance(exc.value, TypeError)


@pytest.mark.parametrize(
    "body",
    [b"{", b"{'a': 1}", b"NaN", b"Infinity", b"\xff\xfe", b"[1,]", b"null null", b" "],
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
    from aclbus.plugin import json_codec

    registered: list[Codec] = []
    json_codec.aclbus_register_codecs(registered.append)
    assert [type(c) for c in registered] == [JsonCodec]
