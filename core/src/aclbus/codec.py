"""Body codecs, chosen by the message's ``content-type``; JSON (orjson) is the default.

A plugin adds a codec through the ``aclbus_register_codecs`` hook. A codec turns the payload
into the body bytes and back; it never sees the envelope, which travels in headers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

import orjson
from pydantic import BaseModel

from aclbus.errors import ACLBusError, ACLDecodeError

__all__ = [
    "JSON",
    "Codec",
    "CodecRegistry",
    "EncodeError",
    "JsonCodec",
]

JSON = "application/json"


class EncodeError(ACLBusError, TypeError):
    """A payload the codec cannot encode (a type it does not know, a NaN for JSON, …)."""


@runtime_checkable
class Codec(Protocol):
    """Turns payloads into body bytes and back for one content type."""

    content_type: str
    """The MIME type this codec reads and writes (``application/json``)."""

    def encode(self, payload: Any) -> bytes:
        """Encode a payload; raise `EncodeError` if it cannot be encoded."""
        ...

    def decode(self, body: bytes) -> Any:
        """Decode a body; raise `ACLDecodeError` (field ``"body"``) if it is malformed."""
        ...


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"type {type(value).__name__} is not JSON serializable")


def _pointer(path: tuple[Any, ...]) -> str:
    """The RFC 6901 JSON Pointer of ``path`` (``/a/0``); empty for the top level."""
    return "".join("/" + str(key).replace("~", "~0").replace("/", "~1") for key in path)


def _non_finite(value: Any, path: tuple[Any, ...] = ()) -> tuple[float, tuple[Any, ...]] | None:
    """The first NaN or infinity inside ``value`` and the keys and indexes leading to it.

    orjson would write it as ``null``.
    """
    if isinstance(value, BaseModel):
        value = value.model_dump()
    elif hasattr(value, "tolist") and not isinstance(value, str | bytes):
        value = value.tolist()  # numpy arrays and scalars
    if isinstance(value, float):
        return None if math.isfinite(value) else (value, path)
    if len(path) > 256:  # deeper than orjson writes
        return None
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    elif isinstance(value, set | frozenset):
        items = enumerate(sorted(value, key=repr))  # the order they are written in
    else:
        return None
    for key, item in items:
        found = _non_finite(item, (*path, key))
        if found is not None:
            return found
    return None


_I64_MIN = -(2**63)
_U64_END = 2**64


def _exact_integers(value: Any, found: list[int], depth: int = 0) -> Any:
    """``value`` with each integer beyond 64 bits as a fragment of JSON holding its digits.

    orjson cannot write such integers; each one found is also put in ``found``. Containers
    are copied as orjson would write them (tuples and sets as arrays, models as their JSON
    dump).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if _I64_MIN <= value < _U64_END:
            return value
        found.append(value)
        return orjson.Fragment(int.__repr__(value))  # an IntEnum's digits, not its name
    if depth > 256:  # deeper than orjson writes: it refuses the payload itself
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        return {
            (int.__repr__(k) if _is_big_int(k) else k): _exact_integers(v, found, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, set | frozenset):
        value = sorted(value, key=repr)  # as _json_default writes sets
    if isinstance(value, list | tuple):
        return [_exact_integers(v, found, depth + 1) for v in value]
    return value


def _is_big_int(value: Any) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and not _I64_MIN <= value < _U64_END
    )


# Digits and "-" as "0", every other byte as " ": the text of an integer becomes one run of
# "0", a negative one counting its sign. orjson keeps integers from -2**63 to 2**64 - 1
# exactly and silently reads any other as a float: those take 20 characters or more
# (18446744073709551616, -9223372036854775809).
_NUMBER_RUNS = bytes(ord("0") if chr(b) in "-0123456789" else ord(" ") for b in range(256))
_LONG_INTEGER = b"0" * 20


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


class JsonCodec:
    """JSON through orjson. An empty body decodes to None; None encodes to ``null``.

    JSON has no NaN or infinity: a payload holding one is refused with `EncodeError` rather
    than silently written as ``null`` (orjson's behaviour), and a body holding a number beyond
    the range of a 64-bit float (``1e400``) is refused, naming where it is. Integers are kept
    exactly whatever their size (orjson's own limit is 64 bits): the rare body or payload that
    holds a larger one goes through the standard library's ``json`` instead.
    """

    content_type = JSON
    _OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

    def encode(self, payload: Any) -> bytes:
        """Encode ``payload`` as compact JSON (pydantic models through their JSON dump).

        Raises:
            EncodeError: The payload holds a value JSON cannot express (an unknown type, NaN
                or infinity, a lone surrogate in a string, an integer of more digits than
                ``sys.get_int_max_str_digits()``); a non-finite number is named by its
                JSON Pointer.
        """
        try:
            body = orjson.dumps(payload, default=_json_default, option=self._OPTIONS)
        except (orjson.JSONEncodeError, TypeError) as exc:
            body = self._encode_exactly(payload, exc)
        # orjson writes NaN and infinities as null: look for them only when a null was written.
        if b"null" in body:
            bad = _non_finite(payload)
            if bad is not None:
                number, path = bad
                where = f"at {_pointer(path)}" if path else "(the whole payload)"
                raise EncodeError(
                    f"payload cannot be encoded as JSON: {number!r} {where} is not a number"
                )
        return body

    def _encode_exactly(self, payload: Any, refusal: Exception) -> bytes:
        """``payload`` written with its integers beyond 64 bits as plain digits."""
        found: list[int] = []
        try:
            exact = _exact_integers(payload, found)
        except ValueError as exc:  # an integer beyond sys.get_int_max_str_digits()
            raise EncodeError(f"payload cannot be encoded as JSON: {exc}") from None
        if not found:
            raise EncodeError(f"payload cannot be encoded as JSON: {refusal}") from None
        try:
            return orjson.dumps(exact, default=_json_default, option=self._OPTIONS)
        except (orjson.JSONEncodeError, TypeError) as exc:
            raise EncodeError(f"payload cannot be encoded as JSON: {exc}") from None

    def decode(self, body: bytes) -> Any:
        """Decode a JSON body; an empty one is None.

        Raises:
            ACLDecodeError: The body is not JSON, or holds a number beyond the range of a
                64-bit float (field ``"body"``; the problem names where, as a JSON Pointer).
        """
        if not body:
            return None
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            # orjson stops at a number it cannot hold (10**400 as well as 1e400): read those
            # again exactly; anything else is malformed as orjson says.
            if isinstance(exc.doc, str) and exc.doc[exc.pos : exc.pos + 1] in _NUMBER_START:
                return _decode_exactly(body, exc)
            raise ACLDecodeError("body", f"malformed JSON: {exc}") from None
        # A long run of digits may be an integer orjson rounded (or a long string of digits,
        # a long fraction: the exact reading gives the same value for those, more slowly).
        # One translation and one substring search, both in C: about half what orjson takes
        # for a small body (``find`` costs less than ``in`` here: measured with callgrind).
        if len(body) >= 20 and body.translate(_NUMBER_RUNS).find(_LONG_INTEGER) >= 0:
            return _decode_exactly(body, None)
        return value


_NUMBER_START = frozenset("-0123456789")


def _decode_exactly(body: bytes, refusal: orjson.JSONDecodeError | None) -> Any:
    """``body`` read by the standard library, which keeps integers of any size exactly.

    Only for bodies orjson read with a long integer in them (``refusal`` None), or refused at
    a number (``refusal``): what orjson refuses for any other reason stays refused, since the
    value must also encode again.
    """
    overflowed: list[str] = []

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            overflowed.append(text)
        return value

    try:
        value = json.loads(body.decode("utf-8"), parse_float=number, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError too
        reason = refusal if refusal is not None and isinstance(exc, json.JSONDecodeError) else exc
        raise ACLDecodeError("body", f"malformed JSON: {reason}") from None
    if overflowed:
        found = _non_finite(value)
        path = found[1] if found is not None else ()
        where = f"at {_pointer(path)}" if path else "(the whole body)"
        raise ACLDecodeError(
            "body",
            f"the number {overflowed[0][:40]} {where} is beyond the range of a 64-bit float",
        )
    if refusal is not None:
        try:
            JsonCodec().encode(value)  # a lone surrogate after the number, say
        except EncodeError:
            raise ACLDecodeError("body", f"malformed JSON: {refusal}") from None
    return value


class CodecRegistry:
    """The codecs known to a bus, by content type; the first registered one is the default."""

    def __init__(self, codecs: list[Codec] | None = None) -> None:
        self._codecs: dict[str, Codec] = {}
        self._default: Codec | None = None
        for codec in codecs or []:
            self.register(codec)

    def register(self, codec: Codec) -> None:
        """Add a codec; a second codec for the same content type is an error.

        Raises:
            ACLBusError: The content type already has a codec.
        """
        key = _normalise(codec.content_type)
        if key in self._codecs:
            raise ACLBusError(f"a codec for {key!r} is already registered")
        self._codecs[key] = codec
        if self._default is None:
            self._default = codec

    @property
    def default(self) -> Codec:
        """The codec used when a message names no content type."""
        if self._default is None:
            raise ACLBusError("no codec is registered")
        return self._default

    def get(self, content_type: str | None) -> Codec:
        """Return the codec of a content type (parameters such as ``charset`` ignored).

        Raises:
            ACLDecodeError: No codec reads that content type (field ``content-type``).
        """
        if content_type is None:
            return self.default
        codec = self._codecs.get(content_type) or self._codecs.get(_normalise(content_type))
        if codec is None:
            known = ", ".join(sorted(self._codecs)) or "none"
            raise ACLDecodeError(
                "content-type", f"no codec for {content_type[:80]!r} (known: {known})"
            )
        return codec

    def __contains__(self, content_type: object) -> bool:
        return isinstance(content_type, str) and _normalise(content_type) in self._codecs

    def __iter__(self) -> Iterator[str]:
        return iter(self._codecs)


def _normalise(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()
