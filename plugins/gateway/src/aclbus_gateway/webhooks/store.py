"""Where registrations live: one KV bucket of the bus' backend, a key per webhook.

The bucket is ``{prefix}-gateway-webhooks``; a key is ``{agent}.{webhook id}``, a value the
registration as JSON, its signing secret included (so that deliveries after a restart are
signed alike): whoever may read the bucket may forge signatures, so keep it to the gateway.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from aclbus import Bus
from aclbus.backend import KeyValue, KVSpec
from aclbus_gateway.webhooks.model import Registration

__all__ = ["RegistrationStore"]

log = logging.getLogger("aclbus.gateway")


class RegistrationStore:
    """The webhooks of a bus' namespace, in its backend's KV.

    Args:
        bus: The gateway's (started) bus.
    """

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._kv: KeyValue | None = None

    @property
    def bucket(self) -> str:
        """The bucket's name."""
        return self._bus.subjects.bucket("gateway", "webhooks")

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            limits = self._bus.settings.streams
            await self._bus.backend.provision(
                KVSpec(
                    bucket=self.bucket,
                    replicas=limits.replicas,
                    storage="memory" if limits.storage == "memory" else "file",
                )
            )
            self._kv = await self._bus.backend.kv(self.bucket)
        return self._kv

    async def load(self) -> list[Registration]:
        """Every registration stored; an entry that does not parse is skipped with a warning."""
        kv = await self._bucket()
        found = []
        for key in await kv.keys():
            entry = await kv.get(key)
            if entry is None:
                continue
            try:
                found.append(Registration.model_validate_json(entry.value))
            except ValidationError as exc:
                log.warning(
                    "webhook registration %r in bucket %s does not parse (%d errors); skipped",
                    key,
                    self.bucket,
                    exc.error_count(),
                )
        return found

    async def add(self, registration: Registration) -> None:
        """Store a new registration."""
        kv = await self._bucket()
        await kv.create(self._key(registration), registration.model_dump_json().encode())

    async def remove(self, registration: Registration) -> None:
        """Delete a registration."""
        kv = await self._bucket()
        await kv.delete(self._key(registration))

    @staticmethod
    def _key(registration: Registration) -> str:
        return f"{registration.agent}.{registration.id}"
