"""One POST of one message to one webhook: signed, bounded in time and in concurrency.

`Poster.post` makes a single attempt and says how it went; when to try again is the
dispatcher's business (`aclbus_gateway.webhooks.dispatch`), which leaves the waiting to the
bus' durable redelivery.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import httpx

from aclbus_gateway.settings import GatewaySettings
from aclbus_gateway.webhooks.hosts import host_allowed
from aclbus_gateway.webhooks.model import Registration
from aclbus_gateway.webhooks.signing import (
    ATTEMPT_HEADER,
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_HEADER,
    sign,
)

__all__ = ["Outcome", "Poster", "backoff_delay"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt went.

    Attributes:
        delivered: The webhook answered 2xx.
        problem: Otherwise what went wrong, without the URL or any secret
            (``HTTP 503``, ``ConnectError``, ``timeout after 10 s``).
    """

    delivered: bool
    problem: str | None = None


def backoff_delay(settings: GatewaySettings, attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (from 1): doubling, capped, jittered.

    The wait is ``min(webhook_backoff * 2 ** (attempt - 1), webhook_backoff_max)``, of which
    a random part up to half is taken off, so that receivers coming back are not hit by every
    retry at once.
    """
    doubled = settings.webhook_backoff * 2.0 ** min(attempt - 1, 60)
    ceiling = min(doubled, settings.webhook_backoff_max)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class Poster:
    """POSTs to webhooks through one HTTP client, at most ``webhook_in_flight`` per webhook.

    Args:
        settings: The gateway's settings (timeout, in-flight bound).
    """

    def __init__(self, settings: GatewaySettings) -> None:
        self._settings = settings
        self._client: httpx.AsyncClient | None = None
        self._slots: dict[str, asyncio.Semaphore] = {}

    async def start(self) -> None:
        """Open the HTTP client."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self._settings.webhook_timeout,
                follow_redirects=False,  # a redirect is not a delivery: fix the URL instead
                trust_env=False,  # no proxy from the environment between us and receivers
            )

    async def stop(self) -> None:
        """Close the HTTP client (POSTs under way fail and are tried again after a restart)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def running(self) -> bool:
        """Whether POSTs can be made (between `start` and `stop`)."""
        return self._client is not None

    def forget(self, webhook_id: str) -> None:
        """Drop the in-flight slots of a deleted webhook."""
        self._slots.pop(webhook_id, None)

    async def post(
        self, registration: Registration, body: bytes, *, delivery_id: str, attempt: int
    ) -> Outcome:
        """One attempt to POST ``body`` to ``registration``'s URL.

        Args:
            registration: The webhook.
            body: The envelope as JSON (`aclbus_gateway.envelope.envelope_bytes`).
            delivery_id: The same for every attempt of this message to this webhook.
            attempt: Which attempt this is, from 1.
        """
        client = self._client
        if client is None:
            return Outcome(False, "the gateway is stopping")
        if not host_allowed(registration.url, self._settings.webhook_hosts):
            # Registered before the allow-list changed: the list in force now decides.
            return Outcome(False, "its host is not one ACLBUS_GATEWAY__WEBHOOK_HOSTS allows")
        slots = self._slots.setdefault(
            registration.id, asyncio.Semaphore(self._settings.webhook_in_flight)
        )
        async with slots:
            timestamp = int(time.time())
            headers = {
                "content-type": "application/json",
                SIGNATURE_HEADER: sign(registration.secret, timestamp, body),
                TIMESTAMP_HEADER: str(timestamp),
                DELIVERY_HEADER: delivery_id,
                ATTEMPT_HEADER: str(attempt),
                WEBHOOK_HEADER: registration.id,
                "user-agent": "aclbus-gateway",
            }
            try:
                response = await client.post(registration.url, content=body, headers=headers)
            except httpx.TimeoutException:
                return Outcome(False, f"no answer within {self._settings.webhook_timeout:g} s")
            except httpx.HTTPError as exc:
                # Only the type: an httpx error's text may quote the URL (and its userinfo).
                return Outcome(False, type(exc).__name__)
        if response.is_success:
            return Outcome(True)
        return Outcome(False, f"HTTP {response.status_code}")
