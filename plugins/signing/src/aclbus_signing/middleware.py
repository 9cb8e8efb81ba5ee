"""The middleware: sign on the way out (`Signing.seal`), verify on the way in (`Signing.consume`).

Signing happens after the message is encoded, through the core's `aclbus.Middleware.seal`
seam, so the signature covers the headers and body exactly as they are sent. Verifying happens
before every other consume middleware (the plugin's hookimpl is ``tryfirst``) and the handler.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aclbus.backend import DeliveryMode
from aclbus.dlq import Reason
from aclbus.middleware import ConsumeNext, Delivery, Middleware, Outgoing
from aclbus_signing.canonical import KEY_HEADER, SIGNATURE_HEADER, canonical, signing_input
from aclbus_signing.keys import PrivateKey, b64url
from aclbus_signing.settings import SigningSettings
from aclbus_signing.verifier import KeysUnavailable, SignatureRefused, Verifier

if TYPE_CHECKING:
    from aclbus import Bus

__all__ = ["Signing", "SigningStats"]

log = logging.getLogger("aclbus.signing")

_RETRY_KEYS_AFTER = 1.0
"""Seconds before a message whose sender's keys could not be read is delivered again."""


@dataclass(slots=True)
class SigningStats:
    """What the plugin did on one bus (``aclbus_signing.stats(bus)``).

    Attributes:
        signed: Messages signed.
        unsigned: Messages sent without a signature (no key for their sender).
        verified: Messages whose signature verified.
        refused: Messages dead-lettered as ``bad-signature`` (mode ``require``).
        warned: Messages that failed a check and were handled anyway (mode ``warn``).
        deferred: Persistent messages handed back because their sender's keys could not be
            read (mode ``require``; the directory out of reach).
    """

    signed: int = 0
    unsigned: int = 0
    verified: int = 0
    refused: int = 0
    warned: int = 0
    deferred: int = 0


class Signing(Middleware):
    """Signs what a bus' agents send and verifies what they receive.

    Args:
        bus: The bus.
        settings: The plugin's settings (mode ``warn`` or ``require``).
        keys: The private key of each sender id that has one of its own.
        default: The key of every other sender; None: they send unsigned.
        verifier: The checks.
    """

    def __init__(
        self,
        bus: Bus,
        settings: SigningSettings,
        *,
        keys: dict[str, PrivateKey],
        default: PrivateKey | None,
        verifier: Verifier,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.require = settings.mode == "require"
        self.keys = keys
        self.default = default
        self.verifier = verifier
        self.stats = SigningStats()
        self._told: set[str] = set()

    def seal(self, out: Outgoing, headers: dict[str, str], body: bytes) -> None:
        """Sign the encoded message with its sender's key: add the two signature headers."""
        # A forwarded message's application headers may hold the signature it came with: it
        # is not this sender's, signed or not.
        headers.pop(SIGNATURE_HEADER, None)
        headers.pop(KEY_HEADER, None)
        sender = out.message.sender_id
        key = self.keys.get(sender, self.default)
        if key is None:
            self.stats.unsigned += 1
            if sender not in self._told:
                self._told.add(sender)
                log.warning("signing: no key for sender %r: its messages go unsigned", sender)
            return
        signature = key.sign(signing_input(canonical(headers, body)))
        headers[KEY_HEADER] = key.key_id
        headers[SIGNATURE_HEADER] = b64url(signature)
        self.stats.signed += 1

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        """Verify before anything else runs; refuse (``require``) or log (``warn``) a failure."""
        try:
            await self.verifier.check(
                delivery.received,
                delivery.message,
                delivery.agent,
                reaches_many=self.bus.subjects.reaches_many(delivery.subject),
            )
        except SignatureRefused as exc:
            msg = delivery.message
            if (
                self.require
                and isinstance(exc, KeysUnavailable)
                and delivery.received.mode is DeliveryMode.AT_LEAST_ONCE
            ):
                # Not a verdict on the message: try it again later (after max_deliver tries,
                # the broker gives up on it and it is dead-lettered as max-deliver).
                self.stats.deferred += 1
                log.warning(
                    "agent %s: message %s from %r not verified yet (%s); redelivered in %g s",
                    delivery.agent,
                    msg.message_id,
                    msg.sender_id,
                    exc.why,
                    _RETRY_KEYS_AFTER,
                )
                await delivery.nack(delay=_RETRY_KEYS_AFTER)
                return
            if self.require:
                self.stats.refused += 1
                log.warning(
                    "agent %s: refused message %s from %r: bad signature: %s",
                    delivery.agent,
                    msg.message_id,
                    msg.sender_id,
                    exc.why,
                )
                # No answer to a sender nobody could verify: dead letter, term, done.
                await self.bus.give_up(
                    delivery.received, agent=delivery.agent, reason=Reason.BAD_SIGNATURE, error=exc
                )
                return
            self.stats.warned += 1
            log.warning(
                "agent %s: message %s from %r: bad signature (%s); handled anyway (mode warn)",
                delivery.agent,
                msg.message_id,
                msg.sender_id,
                exc.why,
            )
        else:
            self.stats.verified += 1
        await call_next(delivery)
