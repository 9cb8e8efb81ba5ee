"""How a webhook POST is signed: HMAC-SHA256 over ``{timestamp}.{body}``, and its headers.

The receiver recomputes ``HMAC-SHA256(secret, f"{timestamp}.".encode() + body)`` with the
secret it got at registration, compares it with the ``aclbus-signature`` header in constant
time, and refuses a timestamp too far from its clock (a replayed POST).
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = [
    "ATTEMPT_HEADER",
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WEBHOOK_HEADER",
    "sign",
    "verify",
]

SIGNATURE_HEADER = "aclbus-signature"
"""``sha256=`` and the hex HMAC-SHA256 of ``{timestamp}.{body}``."""
TIMESTAMP_HEADER = "aclbus-timestamp"
"""When this attempt was signed: Unix seconds, an integer."""
DELIVERY_HEADER = "aclbus-delivery-id"
"""The same for every attempt of one message to one webhook: the receiver's dedup key."""
ATTEMPT_HEADER = "aclbus-delivery-attempt"
"""Which attempt this is, from 1."""
WEBHOOK_HEADER = "aclbus-webhook-id"
"""The webhook (registration) the POST is for."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``aclbus-signature`` value of ``body`` signed at ``timestamp`` with ``secret``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` is ``body``'s at ``timestamp`` with ``secret`` (constant time)."""
    if not timestamp.isdigit():
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)
