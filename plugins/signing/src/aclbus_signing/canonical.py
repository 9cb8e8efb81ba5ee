"""The canonical form of a message, and the bytes its Ed25519 signature covers.

Specified in ``docs/wire-format.md`` section 14, which is the contract (an agent in another
language implements it from there); in short:

1. every header except the unsigned ones (`is_signed`) is taken, its name in lower case, its
   value with spaces and tabs stripped at both ends;
2. sorted by name, each becomes the line ``name:value`` + LF;
3. an empty line (LF), then the SHA-256 of the body in 64 lower-case hex digits, without LF:
   that is the canonical form (`canonical`);
4. the signature is Ed25519 over DSSE's pre-authentication encoding of it (`signing_input`):
   ``DSSEv1 <len(PAYLOAD_TYPE)> <PAYLOAD_TYPE> <len(canonical)> <canonical>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final

from aclbus.errors import ACLBusError

__all__ = [
    "KEY_HEADER",
    "PAYLOAD_TYPE",
    "SIGNATURE_HEADER",
    "CanonicalFormError",
    "canonical",
    "is_signed",
    "signing_input",
]

PAYLOAD_TYPE: Final = "application/vnd.aclbus.envelope.v1"
"""DSSE's payload type of the canonical form: it names this version of the form."""

SIGNATURE_HEADER: Final = "aclbus-signature"
"""The 64-byte Ed25519 signature, base64url without padding (86 characters)."""

KEY_HEADER: Final = "aclbus-signature-key"
"""The key id of the key that made it (`aclbus_signing.keys.key_id`)."""

_UNSIGNED_PREFIXES: Final = ("nats-", "aclbus-dlq-")
# The signature's own headers, and what the DLQ and a replay add to a message on the way.
_UNSIGNED: Final = frozenset({SIGNATURE_HEADER, KEY_HEADER, "aclbus-replay-of"})


class CanonicalFormError(ACLBusError, ValueError):
    """A header block with no canonical form: a header twice, or a value holding CR or LF.

    Args:
        problem: What is wrong, naming the header (never its value).
    """

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def is_signed(name: str) -> bool:
    """Whether the lower-case header ``name`` is covered by the signature.

    Every header is, but those the server or the backend adds (``nats-*``), those the
    dead-letter queue and a replay add (``aclbus-dlq-*``, ``aclbus-replay-of``) and the
    signature's own two (`SIGNATURE_HEADER`, `KEY_HEADER`).
    """
    return not (name in _UNSIGNED or name.startswith(_UNSIGNED_PREFIXES))


def canonical(headers: Mapping[str, str], body: bytes) -> bytes:
    """The canonical form of a message of ``headers`` and ``body`` (the module's steps 1-3).

    Raises:
        CanonicalFormError: Two headers of one name in different cases, or a value with CR
            or LF (neither can come from a valid NATS header block).
    """
    lines: dict[str, str] = {}
    for raw_name, raw_value in headers.items():
        name = raw_name.lower()
        # (is_signed, inline: this runs twice per message, once on each side)
        if name in _UNSIGNED or name.startswith(_UNSIGNED_PREFIXES):
            continue
        if name in lines:
            raise CanonicalFormError(f"header {name!r} is given twice")
        lines[name] = raw_value.strip(" \t")
    text = "".join([f"{name}:{lines[name]}\n" for name in sorted(lines)])
    if text.count("\n") != len(lines) or "\r" in text:
        for name, value in lines.items():
            if "\r" in value or "\n" in value:
                raise CanonicalFormError(f"header {name!r} holds a line break")
    return f"{text}\n{hashlib.sha256(body).hexdigest()}".encode()


_PAE_TYPE: Final = f"DSSEv1 {len(PAYLOAD_TYPE)} {PAYLOAD_TYPE} ".encode()


def signing_input(form: bytes) -> bytes:
    """The bytes the signature covers: DSSE v1's ``PAE(PAYLOAD_TYPE, form)``."""
    return b"%s%d %s" % (_PAE_TYPE, len(form), form)
