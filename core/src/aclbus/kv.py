"""The key-value contract: a `KeyValue` bucket, its `KVEntry` revisions, `KVConflict`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from aclbus.errors import ACLBusError

__all__ = ["KVConflict", "KVEntry", "KeyValue", "check_revision"]


class KVConflict(ACLBusError):
    """A key-value write whose precondition failed: the key exists, or its revision moved.

    Raised by `KeyValue.create`, `KeyValue.update` and a conditional `KeyValue.delete`.
    """

    def __init__(self, bucket: str, key: str, detail: str) -> None:
        self.bucket = bucket
        self.key = key
        super().__init__(f"{bucket}/{key}: {detail}")


@dataclass(frozen=True, slots=True)
class KVEntry:
    """One revision of a key. ``operation`` is ``"delete"`` for a deletion marker."""

    bucket: str
    key: str
    value: bytes
    revision: int
    created: datetime
    operation: Literal["put", "delete"] = "put"


def check_revision(revision: int) -> int:
    """``revision`` if it can be a revision to compare with (1 or more).

    Raises:
        ValueError: It is below 1.
    """
    if revision < 1:
        raise ValueError(
            f"revision must be >= 1 (revisions start at 1), got {revision!r}; "
            "delete(key) without a revision deletes unconditionally"
        )
    return revision


class KeyValue(ABC):
    """A key-value bucket: revisions, compare-and-set, watch. Keys are dotted ids."""

    bucket: str

    @abstractmethod
    async def get(self, key: str) -> KVEntry | None:
        """The latest live entry of ``key``, or None if absent, deleted or expired."""

    @abstractmethod
    async def put(self, key: str, value: bytes) -> int:
        """Write ``value``; return the new revision."""

    @abstractmethod
    async def create(self, key: str, value: bytes) -> int:
        """Write only if ``key`` has no live entry; raise `KVConflict` otherwise."""

    @abstractmethod
    async def update(self, key: str, value: bytes, revision: int) -> int:
        """Write only if the latest revision of ``key`` is ``revision``; else `KVConflict`."""

    @abstractmethod
    async def delete(self, key: str, *, revision: int | None = None) -> None:
        """Delete ``key`` (a deletion marker that watchers see).

        Args:
            key: The key.
            revision: Delete only if the latest revision of ``key`` (a deletion marker's
                included) is this one: compare-and-delete, as `update` is compare-and-set.
                None deletes whatever the latest is.

        Raises:
            KVConflict: ``revision`` is not the latest revision of ``key`` (nothing deleted).
            ValueError: ``revision`` is below 1 (revisions start at 1).
        """

    @abstractmethod
    async def keys(self) -> list[str]:
        """The keys with a live entry, sorted."""

    @abstractmethod
    def watch(self, pattern: str = ">") -> AsyncIterator[KVEntry]:
        """Yield every change to keys matching ``pattern`` from now on, until closed."""

    async def started_watch(self, pattern: str = ">") -> AsyncIterator[KVEntry]:
        """`watch`, returned once the watcher is in place: no later change can be missed.

        A backend whose watcher starts at once (memory) need not override it; one whose
        watcher starts with a round trip to the server (NATS) waits for it here.
        """
        return self.watch(pattern)
