"""aclbus-signing.

Signed envelopes: a receiver can verify that `sender_id` really sent a message (SPEC R10, R11).
"""

from __future__ import annotations

__all__: list[str] = []
