"""Where a directory keeps its records: two KV buckets of one backend, and that backend's clock.

Descriptions go to ``{prefix}-directory``, presence records to ``{prefix}-presence`` (a bucket
with the presence TTL, kept in memory: beats are rewritten every few seconds). Both are
provisioned on first use. Beat times come from the backend's clock, so that they and the
bucket's TTL move together (a test's `ManualClock` on the memory engine).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aclbus.backend import KeyValue, KVSpec

if TYPE_CHECKING:
    from aclbus.backend import Backend
    from aclbus.settings import Settings

__all__ = ["DirectoryStores"]


class DirectoryStores:
    """The two buckets of a `Directory` and the clock of their backend.

    Args:
        backend: The backend that holds the buckets.
        settings: The bus' settings: stream limits, and the presence TTL.
        bucket: The descriptions' bucket.
        presence_bucket: The presence records' bucket.
    """

    def __init__(
        self, backend: Backend, settings: Settings, bucket: str, presence_bucket: str
    ) -> None:
        self._backend = backend
        self._settings = settings
        self.bucket = bucket
        self.presence_bucket = presence_bucket
        self._clock = backend.clock
        self.sleep: Callable[[float], Awaitable[None]] = self._clock.sleep
        """Sleep on the backend's clock."""
        self._descriptions: KeyValue | None = None
        self._presence: KeyValue | None = None

    def now(self) -> float:
        """Wall-clock seconds of the backend's clock."""
        return self._clock.wall().timestamp()

    async def open(self) -> tuple[KeyValue, KeyValue]:
        """The descriptions' and the presence bucket, provisioned on first use."""
        if self._descriptions is None or self._presence is None:
            backend = self._backend
            limits = self._settings.streams
            await backend.provision(
                KVSpec(
                    bucket=self.bucket,
                    replicas=limits.replicas,
                    storage="memory" if limits.storage == "memory" else "file",
                )
            )
            # Beats are rewritten every few seconds: keep them off the disk.
            await backend.provision(
                KVSpec(
                    bucket=self.presence_bucket,
                    ttl=self._settings.directory.presence_ttl,
                    replicas=limits.replicas,
                    storage="memory",
                )
            )
            self._descriptions = await backend.kv(self.bucket)
            self._presence = await backend.kv(self.presence_bucket)
        return self._descriptions, self._presence
