"""Checking one received message: signature, key, timestamp window, seen-id window, receiver.

`Verifier.check` runs the checks of ``docs/wire-format.md`` section 14.4 in order and raises
`SignatureRefused` for the first that fails, its ``why`` saying which (no secret is ever in
it: key ids are public keys). It records a message id as seen only once its signature has
verified, so a forger cannot spend a genuine message's id in advance.
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from aclbus.errors import ACLBusError
from aclbus_signing.canonical import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    CanonicalFormError,
    canonical,
    signing_input,
)
from aclbus_signing.keys import InvalidKey, decode_key_id, public_key, verify
from aclbus_signing.trust import KeyRing

if TYPE_CHECKING:
    from nacl.signing import VerifyKey

    from aclbus import ACLMessage, Received
    from aclbus.clock import Clock

__all__ = ["KeysUnavailable", "SeenIds", "SignatureRefused", "StoredAt", "Verifier"]

StoredAt = tuple[str | None, int | None]
"""Where a delivery is stored: its stream and sequence (None, None when not stored)."""


class SignatureRefused(ACLBusError):
    """A message whose signature does not prove who sent it.

    Its text is what the dead letter's ``aclbus-dlq-error`` holds.

    Args:
        why: Which check failed, with the values that are not secret (ids, key ids, times).
        key_id: The key id the message named, if it named a readable one.
    """

    def __init__(self, why: str, key_id: str | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.key_id = key_id


class KeysUnavailable(SignatureRefused):
    """The sender's keys could not be read (the directory is out of reach): not a verdict.

    A persistent message is handed back for a later redelivery instead of dead-lettered.
    """


class SeenIds:
    """Message ids already accepted, per agent, each until it would be too old anyway.

    Args:
        limit: How many are kept; the oldest is forgotten first.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: OrderedDict[tuple[str, str], tuple[float, StoredAt]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def replayed(self, agent: str, message_id: str, stored: StoredAt, now: float) -> bool:
        """Whether this delivery repeats one accepted before (a redelivery is no repeat).

        A redelivery is the same stored message again: same stream, same sequence. A message
        published again, even with the same id, is stored under a new sequence; one that was
        not stored (``stored[1]`` None: core NATS) is a repeat whenever its id comes again.
        """
        seen = self._seen.get((agent, message_id))
        if seen is None or seen[0] <= now:
            return False
        return stored[1] is None or seen[1] != stored

    def add(self, agent: str, message_id: str, stored: StoredAt, now: float, until: float) -> None:
        """Remember an accepted message until ``until`` (on the clock of ``now``)."""
        key = (agent, message_id)
        self._seen[key] = (until, stored)
        self._seen.move_to_end(key)
        while self._seen:  # drop what has expired at the old end, and beyond the limit
            first, (expires, _) = next(iter(self._seen.items()))
            if expires > now and len(self._seen) <= self.limit:
                break
            del self._seen[first]


def _signature(text: str) -> bytes | None:
    try:
        # validate: a character outside base64url is refused, not skipped
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 64 else None


class Verifier:
    """The checks of one bus.

    Args:
        ring: Whose keys are whose.
        clock: The clock: wall time for ``ce-time``, monotonic time for the seen ids.
        max_age: Seconds a message may be old.
        max_skew: Seconds it may be ahead.
        seen: The seen-id window.
    """

    def __init__(
        self, ring: KeyRing, clock: Clock, *, max_age: float, max_skew: float, seen: SeenIds
    ) -> None:
        self.ring = ring
        self.clock = clock
        self.max_age = max_age
        self.max_skew = max_skew
        self.seen = seen
        # Public keys already trusted for someone, by key id: parsed once, not per message.
        self._keys: dict[str, VerifyKey] = {}

    async def check(
        self, received: Received, msg: ACLMessage, agent: str, *, reaches_many: bool
    ) -> str:
        """Check a decoded delivery for ``agent``; the key id it was signed with.

        Args:
            received: The delivery, its headers and body as they came.
            msg: The message decoded from them.
            agent: The agent it was delivered to.
            reaches_many: It came by broadcast, group or topic (it names no receivers).

        Raises:
            SignatureRefused: Which check failed.
        """
        headers: Mapping[str, str] = {k.lower(): v for k, v in received.headers.items()}
        sig_text = headers.get(SIGNATURE_HEADER)
        kid_text = headers.get(KEY_HEADER)
        if sig_text is None or kid_text is None:
            missing = SIGNATURE_HEADER if sig_text is None else KEY_HEADER
            raise SignatureRefused(f"unsigned: no {missing} header")
        try:
            kid = decode_key_id(kid_text, where=KEY_HEADER)
        except InvalidKey as exc:
            raise SignatureRefused(str(exc)) from None
        signature = _signature(sig_text.strip(" \t"))
        if signature is None:
            raise SignatureRefused(f"{SIGNATURE_HEADER} is not 64 bytes in base64url", kid)
        sender = msg.sender_id
        try:
            trusted = await self.ring.trusts(sender, kid)
        except Exception as exc:
            raise KeysUnavailable(
                f"the keys of {sender!r} could not be read from the directory "
                f"({type(exc).__name__})",
                kid,
            ) from None
        if not trusted:
            raise SignatureRefused(
                f"key {kid} is not one of the keys of {sender!r} (ce-source): unknown key or "
                "forged sender",
                kid,
            )
        try:
            form = canonical(headers, received.body)
        except CanonicalFormError as exc:
            raise SignatureRefused(str(exc), kid) from None
        key = self._keys.get(kid)
        if key is None:
            key = self._keys[kid] = public_key(kid)
        if not verify(key, signature, signing_input(form)):
            raise SignatureRefused(
                f"the signature does not match the message (altered in transit, or not signed "
                f"by {kid})",
                kid,
            )
        if "ce-time" not in headers:
            raise SignatureRefused("no ce-time: a signed message must say when it was made", kid)
        self._check_time(msg.timestamp, kid)
        now = self.clock.now()
        stored = (received.stream, received.sequence)
        if self.seen.replayed(agent, msg.message_id, stored, now):
            raise SignatureRefused(
                f"replay: message {msg.message_id} was accepted by {agent!r} before", kid
            )
        receivers = msg.all_receivers
        if not reaches_many and receivers and agent not in receivers:
            raise SignatureRefused(
                f"misdirected: signed for {', '.join(receivers)}, delivered to {agent!r}", kid
            )
        self.seen.add(agent, msg.message_id, stored, now, now + self.max_age + self.max_skew)
        return kid

    def _check_time(self, timestamp: datetime, kid: str) -> None:
        age = (self.clock.wall() - timestamp).total_seconds()
        if age > self.max_age:
            raise SignatureRefused(
                f"too old: ce-time {timestamp.isoformat()} is {age:.0f} s ago, over max_age "
                f"{self.max_age:g} s",
                kid,
            )
        if -age > self.max_skew:
            raise SignatureRefused(
                f"from the future: ce-time {timestamp.isoformat()} is {-age:.0f} s ahead, over "
                f"max_skew {self.max_skew:g} s",
                kid,
            )
