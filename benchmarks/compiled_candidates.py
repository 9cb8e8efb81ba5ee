"""The operations of ``docs/performance.md``'s compiled-path evaluation, counted by callgrind.

``python benchmarks/compiled_candidates.py N OPERATION`` runs one operation N times (the
names are the keys of `OPS`); callgrind's count for two values of N gives its instructions
per call. msgspec is not a dependency of aclbus: install it into the venv to run this
(``uv pip install --python .venv/bin/python msgspec``). `decode_msgspec` is the prototype of
a header decode through ``msgspec.convert``: it leaves out ``acl-receivers``,
``acl-caused-by`` and the checks of application headers and extensions, which
``msgspec.convert`` cannot express.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson

from aclbus import wire
from aclbus.acl import ACLMessage, Performative, build, field_template, trusted
from aclbus.codec import CodecRegistry, JsonCodec
from aclbus.errors import ACLDecodeError
from aclbus.wire.cloudevents import PERFORMATIVE_BY_TYPE
from aclbus.wire.header_block import normalized_headers

__all__ = ["OPS", "Envelope", "decode_msgspec"]

Id = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
Dotted = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,128}(\.[A-Za-z0-9_-]{1,128})*$")]
Text = Annotated[str, msgspec.Meta(pattern=r"^[\x21-\x7e](?:[\x20-\x7e]{0,1022}[\x21-\x7e])?$")]
CeType = Literal[tuple(PERFORMATIVE_BY_TYPE)]  # type: ignore[valid-type]  # every ce-type


class Envelope(msgspec.Struct, rename="kebab", frozen=True):
    """The envelope headers, validated by msgspec.convert (strict=False: '5' -> 5)."""

    ce_specversion: Literal["1.0"]
    ce_id: Id
    ce_source: Id
    ce_type: CeType
    ce_time: datetime | None = None
    content_type: str = "application/json"
    acl_version: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,4}\.[0-9]{1,4}$")] = "1.0"
    acl_receiver_id: Id | None = None
    acl_correlation_id: Id | None = None
    acl_reply_to: Id | None = None
    acl_reply_with: Id | None = None
    acl_in_reply_to: Id | None = None
    acl_protocol: Id | None = None
    acl_message_type: Dotted | None = None
    acl_topic: Dotted | None = None
    acl_routing_key: Text | None = None
    acl_language: Text | None = None
    acl_ontology: Text | None = None
    acl_priority: Annotated[int, msgspec.Meta(ge=0, le=9)] = 4
    acl_retry_count: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0
    acl_hops: Annotated[int, msgspec.Meta(ge=0, le=255)] = 0
    acl_ttl: Annotated[float, msgspec.Meta(ge=1.0)] | None = None
    acl_reply_by: datetime | None = None


_convert = msgspec.convert
_known = {f.encode_name for f in msgspec.structs.fields(Envelope)}


def decode_msgspec(headers: dict[str, str], body: bytes, codecs: CodecRegistry) -> ACLMessage:
    """Decode as wire.decode does, the envelope checked by msgspec (receivers etc. left out)."""
    h, _size = normalized_headers(headers, body)
    try:
        e = _convert(h, Envelope, strict=False)
    except msgspec.ValidationError as exc:
        raise ACLDecodeError("headers", str(exc)) from None
    f = field_template()
    f["message_id"] = e.ce_id
    f["sender_id"] = e.ce_source
    f["performative"] = PERFORMATIVE_BY_TYPE[e.ce_type]
    f["timestamp"] = e.ce_time
    f["acl_version"] = e.acl_version
    f["receiver_id"] = e.acl_receiver_id
    f["correlation_id"] = e.acl_correlation_id
    f["reply_to"] = e.acl_reply_to
    f["reply_with"] = e.acl_reply_with
    f["in_reply_to"] = e.acl_in_reply_to
    f["protocol"] = e.acl_protocol
    f["message_type"] = e.acl_message_type
    f["topic"] = e.acl_topic
    f["routing_key"] = e.acl_routing_key
    f["language"] = e.acl_language
    f["ontology"] = e.acl_ontology
    f["priority"] = e.acl_priority
    f["retry_count"] = e.acl_retry_count
    f["hops"] = e.acl_hops
    f["ttl"] = e.acl_ttl
    f["reply_by"] = e.acl_reply_by
    f["payload"] = codecs.get(e.content_type).decode(body)
    ext: dict[str, str] = {}
    app: dict[str, str] = {}
    for k, v in h.items():
        if k not in _known:
            if k.startswith("acl-"):
                ext[k[4:]] = v
            elif not k.startswith(("ce-", "nats-")):
                app[k] = v
    f["extensions"] = ext
    f["headers"] = app
    return trusted(f)


PAYLOAD = {"task": "sum", "values": list(range(16)), "note": "x" * 64}
SMALL = "x" * 100
codecs = CodecRegistry()
codecs.register(JsonCodec())
msg = ACLMessage(
    performative=Performative.REQUEST,
    sender_id="client",
    receiver_id="worker",
    message_type="math.sum",
    payload=PAYLOAD,
)
headers, body = wire.encode(msg, codecs)
assert decode_msgspec(headers, body, codecs) == wire.decode(headers, body, codecs)
small = build(
    performative=Performative.INFORM, sender_id="source", receiver_id="sink", payload=SMALL
)
small_headers, small_wire_body = wire.encode(small, codecs)
enc, dec = msgspec.json.Encoder(), msgspec.json.Decoder()
big_body, small_body = orjson.dumps(PAYLOAD), orjson.dumps(SMALL)
jc = JsonCodec()


class Env2(msgspec.Struct, frozen=True, gc=False):
    """(c) an internal message as a Struct: what trusted construction would cost."""

    message_id: str
    sender_id: str
    receiver_id: str | None
    performative: str
    timestamp: datetime
    payload: Any
    priority: int = 4


OPS = {
    "orjson_dumps": lambda: orjson.dumps(PAYLOAD),
    "msgspec_encode": lambda: enc.encode(PAYLOAD),
    "jsoncodec_encode": lambda: jc.encode(PAYLOAD),
    "orjson_loads": lambda: orjson.loads(big_body),
    "msgspec_decode": lambda: dec.decode(big_body),
    "jsoncodec_decode": lambda: jc.decode(big_body),
    "orjson_dumps_small": lambda: orjson.dumps(SMALL),
    "msgspec_encode_small": lambda: enc.encode(SMALL),
    "orjson_loads_small": lambda: orjson.loads(small_body),
    "msgspec_decode_small": lambda: dec.decode(small_body),
    "wire_decode": lambda: wire.decode(headers, body, codecs),
    "msgspec_header_decode": lambda: decode_msgspec(headers, body, codecs),
    "msgspec_convert_only": lambda: _convert(
        normalized_headers(headers, body)[0], Envelope, strict=False
    ),
    "normalized_only": lambda: normalized_headers(headers, body),
    "trusted": lambda: trusted(field_template()),
    "struct_trusted": lambda: Env2(
        message_id="a",
        sender_id="b",
        receiver_id="c",
        performative="inform",
        timestamp=msg.timestamp,
        payload=PAYLOAD,
    ),
    "wire_encode_small": lambda: wire.encode(small, codecs),
    "wire_decode_small": lambda: wire.decode(small_headers, small_wire_body, codecs),
    "build": lambda: build(
        performative=Performative.REQUEST, sender_id="client", receiver_id="worker", payload=PAYLOAD
    ),
    "noop": lambda: None,
}

if __name__ == "__main__":
    n, op = int(sys.argv[1]), sys.argv[2]
    fn = OPS[op]
    for _ in range(n):
        fn()
