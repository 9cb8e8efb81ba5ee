"""Key-value buckets: revisions, compare-and-set, deletion markers, watch and a TTL.

As in JetStream KV, revisions count writes across the whole bucket, a deletion is a marker
entry with a revision of its own, and the bucket's TTL drops entries silently (watchers are
not told) once they are older than it, on the engine's clock.
"""

from __future__ import annotations

import asyncio
import math
import re
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Literal

from aclbus.backend import KeyValue, KVConflict, KVEntry, KVSpec, check_revision
from aclbus.backends.memory.clock import Clock
from aclbus.errors import InvalidIdentifier, MessageTooLarge
from aclbus.subjects import check_filter, subject_matches

__all__ = ["Bucket", "KVWatch", "MemoryKeyValue"]

_KEY = re.compile(r"[-/_=A-Za-z0-9]+(?:\.[-/_=A-Za-z0-9]+)*")


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InvalidIdentifier(
            "KV key",
            key,
            "use dot-separated tokens of ASCII letters, digits, '-', '/', '_' or '='",
        )
    return key


class KVWatch(AsyncIterator[KVEntry]):
    """The changes to the keys matching a pattern, from when the watch was made.

    Iterate with ``async for``; `aclose` (or the backend closing) ends the iteration. A watch
    that is dropped without `aclose` is forgotten by its bucket when it is garbage-collected.
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._entries: deque[KVEntry] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    def push(self, entry: KVEntry) -> None:
        """Queue a change for the iteration."""
        if self.closed:
            return
        self._entries.append(entry)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """End the iteration once the changes already queued are consumed."""
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def aclose(self) -> None:
        """Stop watching."""
        self.close()

    def __aiter__(self) -> KVWatch:
        return self

    async def __anext__(self) -> KVEntry:
        while not self._entries:
            if self.closed:
                raise StopAsyncIteration
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return self._entries.popleft()


class Bucket:
    """The state of one bucket, shared by every connection to the engine.

    Args:
        spec: Its configuration.
        clock: The engine's clock (TTLs and timestamps).
    """

    def __init__(self, spec: KVSpec, clock: Clock) -> None:
        self.spec = spec
        self.name = spec.bucket
        self._clock = clock
        self.revision = 0
        # key -> (latest entry, marker included; monotonic time it expires)
        self._latest: dict[str, tuple[KVEntry, float]] = {}
        self._watches: weakref.WeakSet[KVWatch] = weakref.WeakSet()

    def _live(self, key: str) -> KVEntry | None:
        """The latest entry of ``key`` (a deletion marker included), unless it expired."""
        found = self._latest.get(key)
        if found is None:
            return None
        entry, expires = found
        if expires <= self._clock.now():
            del self._latest[key]
            return None
        return entry

    def get(self, key: str) -> KVEntry | None:
        """The latest live entry of ``key``; None if absent, deleted or expired."""
        entry = self._live(key)
        return entry if entry is not None and entry.operation == "put" else None

    def latest_revision(self, key: str) -> int:
        """The revision of the latest entry of ``key`` (a marker's too), or 0."""
        entry = self._live(key)
        return entry.revision if entry is not None else 0

    def write(self, key: str, value: bytes, operation: Literal["put", "delete"]) -> KVEntry:
        """Append a revision of ``key`` and tell the watches."""
        self.revision += 1
        entry = KVEntry(
            bucket=self.name,
            key=key,
            value=value,
            revision=self.revision,
            created=self._clock.wall(),
            operation=operation,
        )
        ttl = self.spec.ttl
        expires = self._clock.now() + ttl if ttl is not None else math.inf
        self._latest[key] = (entry, expires)
        for watch in list(self._watches):
            if watch.closed:
                self._watches.discard(watch)
            elif subject_matches(watch.pattern, key):
                watch.push(entry)
        return entry

    def keys(self) -> list[str]:
        """The keys with a live entry, sorted."""
        return sorted(key for key in list(self._latest) if self.get(key) is not None)

    def watch(self, pattern: str) -> KVWatch:
        """A new watch of the keys matching ``pattern``."""
        watch = KVWatch(pattern)
        self._watches.add(watch)
        return watch

    def close_watches(self) -> None:
        """End every watch (the engine shuts down)."""
        for watch in list(self._watches):
            watch.close()
        self._watches.clear()

    def describe(self) -> dict[str, object]:
        """Facts for `MemoryBackend.describe`."""
        return {
            "keys": len(self.keys()),
            "revision": self.revision,
            "ttl": self.spec.ttl,
            "history": self.spec.history,
        }


class MemoryKeyValue(KeyValue):
    """One connection's handle on a `Bucket` (what `MemoryBackend.kv` returns).

    Args:
        bucket: The bucket's state.
        check: Raises `BackendClosed` when the connection is not open.
        track: Registers a watch with the connection, which ends it when it closes.
        max_payload: The largest value in bytes.
    """

    def __init__(
        self,
        bucket: Bucket,
        *,
        check: Callable[[], None],
        track: Callable[[KVWatch], None],
        max_payload: int,
    ) -> None:
        self.bucket = bucket.name
        self._state = bucket
        self._check = check
        self._track = track
        self._max_payload = max_payload

    def _value(self, key: str, value: bytes) -> bytes:
        if len(value) > self._max_payload:
            raise MessageTooLarge(
                len(value), self._max_payload, f"value of KV key {self.bucket}/{key}"
            )
        return value if type(value) is bytes else bytes(value)

    async def get(self, key: str) -> KVEntry | None:
        """The latest live entry of ``key``, or None if absent, deleted or expired."""
        self._check()
        return self._state.get(_check_key(key))

    async def put(self, key: str, value: bytes) -> int:
        """Write ``value``; return the new revision."""
        self._check()
        _check_key(key)
        return self._state.write(key, self._value(key, value), "put").revision

    async def create(self, key: str, value: bytes) -> int:
        """Write only if ``key`` has no live entry; raise `KVConflict` otherwise."""
        self._check()
        _check_key(key)
        current = self._state.get(key)
        if current is not None:
            raise KVConflict(
                self.bucket, key, f"key exists at revision {current.revision}; use update()"
            )
        return self._state.write(key, self._value(key, value), "put").revision

    async def update(self, key: str, value: bytes, revision: int) -> int:
        """Write only if the latest revision of ``key`` is ``revision``; else `KVConflict`."""
        self._check()
        _check_key(key)
        latest = self._state.latest_revision(key)
        if latest != revision:
            detail = (
                f"expected revision {revision}, but the latest is {latest}"
                if latest
                else f"expected revision {revision}, but the key has no revision"
            )
            raise KVConflict(self.bucket, key, detail)
        return self._state.write(key, self._value(key, value), "put").revision

    async def delete(self, key: str, *, revision: int | None = None) -> None:
        """Delete ``key``: a deletion marker that watchers see.

        With ``revision``, only if that is the latest revision of ``key`` (a deletion
        marker's included); else `KVConflict`, nothing deleted.
        """
        self._check()
        _check_key(key)
        if revision is not None:
            latest = self._state.latest_revision(key)
            if latest != check_revision(revision):
                detail = (
                    f"expected revision {revision} to delete, but the latest is {latest}"
                    if latest
                    else f"expected revision {revision} to delete, but the key has no revision"
                )
                raise KVConflict(self.bucket, key, detail)
        self._state.write(key, b"", "delete")

    async def keys(self) -> list[str]:
        """The keys with a live entry, sorted."""
        self._check()
        return self._state.keys()

    def watch(self, pattern: str = ">") -> KVWatch:
        """Yield every change to keys matching ``pattern`` from now on, until closed."""
        self._check()
        watch = self._state.watch(check_filter(pattern, "KV watch pattern"))
        self._track(watch)
        return watch
