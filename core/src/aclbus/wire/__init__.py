"""The wire format: an `ACLMessage` as headers plus a body, and back (``docs/wire-format.md``).

CloudEvents binary mode carries the identity of the message (``ce-id``, ``ce-source``,
``ce-type``, ``ce-specversion``, ``ce-time``); ``acl-*`` headers carry the other envelope fields,
named after the field (``reply_with`` → ``acl-reply-with``); ``content-type`` picks the codec of
the body, which holds the payload alone. Decoding checks every header itself and builds the
message without validating it twice; any problem is an `ACLDecodeError` naming the header, and
a header block that breaks the rules of the block (a header of the envelope given twice, a name
that is not a token) is a `MalformedHeaders`. A backend that reads raw header blocks hands over
what a mapping cannot show in `ParsedHeaders`.

The package, one module per part: `encoding` (`encode`) and `decoding` (`decode`); the rules
of a header block (`header_block`) and the headers a backend read from one (`parsed_headers`);
the optional envelope headers and their parsers (`fields`); the envelopes seen before
(`repeats`); the CloudEvents attributes (`cloudevents`); times as text (`timestamps`); the
size of a message on the wire (`size`).
"""

from __future__ import annotations

from aclbus.wire.cloudevents import CE_SPECVERSION, CE_TYPE_PREFIX
from aclbus.wire.decoding import decode
from aclbus.wire.encoding import encode
from aclbus.wire.header_block import (
    ENVELOPE_HEADER_PREFIXES,
    HEADER_TOKEN,
    ParsedHeaders,
    check_headers,
    header_name_error,
    is_envelope_header,
    repeated_header_error,
)
from aclbus.wire.repeats import VARYING_HEADERS
from aclbus.wire.size import encoded_size

__all__ = [
    "CE_SPECVERSION",
    "CE_TYPE_PREFIX",
    "ENVELOPE_HEADER_PREFIXES",
    "HEADER_TOKEN",
    "VARYING_HEADERS",
    "ParsedHeaders",
    "check_headers",
    "decode",
    "encode",
    "encoded_size",
    "header_name_error",
    "is_envelope_header",
    "repeated_header_error",
]
