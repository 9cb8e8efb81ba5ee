"""Where a stream announces what it stores: the subjects lazy subscriptions listen to.

A stream provisioned with `StreamSpec.announce` republishes the headers of each message it
stores under that pattern (JetStream's RePublish) on `announcement_subject`; a lazy
subscription listens there until its consumer is made.
"""

from __future__ import annotations

from nats.js import api

from aclbus.permissions import ANNOUNCEMENTS

__all__ = ["ANNOUNCEMENTS", "announcement_subject", "republish"]


def announcement_subject(subject: str) -> str:
    """Where a stream announces the messages it stores on ``subject`` (or a pattern)."""
    return f"{ANNOUNCEMENTS}.{subject}"


def republish(pattern: str) -> api.RePublish:
    """The RePublish that announces ``pattern``'s messages on `announcement_subject`."""
    tokens, wildcard = [], 0
    for token in pattern.split("."):
        if token == "*":
            wildcard += 1
            token = f"{{{{wildcard({wildcard})}}}}"
        tokens.append(token)
    return api.RePublish(
        src=pattern, dest=announcement_subject(".".join(tokens)), headers_only=True
    )
