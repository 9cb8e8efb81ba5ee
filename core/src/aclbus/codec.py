"""Body codecs, chosen by the message's ``content-type``; JSON (orjson) is the default.

A plugin adds a codec through the ``aclbus_register_codecs`` hook. A codec turns the payload
into the body bytes and back; it never sees the envelope, which travels in headers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

import orjson
from pydantic import BaseModel

from aclbus.errors import ACLBusError, ACLDecodeError
from aclbus.plugin import hookimpl
from aclbus.plugin.spec import CodecRegister

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


def _non_finite(value: Any, depth: int = 0) -> float | None:
    """The first NaN or infinity inside ``value`` (which orjson would write as ``null``)."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    elif hasattr(value, "tolist") and not isinstance(value, str | bytes):
        value = value.tolist()  # numpy arrays and scalars
    if isinstance(value, float):
        return None if math.isfinite(value) else value
    if depth > 256:  # deeper than orjson writes
        return None
    items: Iterable[Any]
    if isinstance(value, dict):
        items = value.values()
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        return None
    for item in items:
        found = _non_finite(item, depth + 1)
        if found is not None:
            return found
    return None


class JsonCodec:
    """JSON through orjson. An empty body decodes to None; None encodes to ``null``.

    JSON has no NaN or infinity: a payload holding one is refused with `EncodeError` rather
    than silently written as ``null`` (orjson's behaviour).
    """

    content_type = JSON
    _OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

    def encode(self, payload: Any) -> bytes:
        """Encode ``payload`` as compact JSON (pydantic models through their JSON dump).

        Raises:
            EncodeError: The payload holds a value JSON cannot express (an unknown type, an
                integer beyond 64 bits, NaN or infinity, a lone surrogate in a string).
        """
        try:
            body = orjson.dumps(payload, default=_json_default, option=self._OPTIONS)
        except (orjson.JSONEncodeError, TypeError) as exc:
            raise EncodeError(f"payload cannot be encoded as JSON: {exc}") from None
        # orjson writes NaN and infinities as null: look for them only when a null was written.
        if b"null" in body:
            bad = _non_finite(payload)
            if bad is not None:
                raise EncodeError(f"payload cannot be encoded as JSON: {bad!r} is not a number")
        return body

    def decode(self, body: bytes) -> Any:
        """Decode a JSON body; an empty one is None."""
        if not body:
            return None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ACLDecodeError("body", f"malformed JSON: {exc}") from None


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


@hookimpl
def aclbus_register_codecs(register: CodecRegister) -> None:
    """Register the JSON codec: the core ships it as a default plugin."""
    register(JsonCodec())
