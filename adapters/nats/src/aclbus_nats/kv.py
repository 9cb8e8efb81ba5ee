"""Key-value buckets on JetStream KV, behind aclbus' `KeyValue` contract."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import nats.js.errors as js_errors
from nats.js import api

from aclbus.backend import KeyValue, KVConflict, KVEntry, check_revision

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue as NatsKV

__all__ = ["NatsKeyValue"]

_DELETE_OPS = ("DEL", "PURGE")
_WRONG_LAST_SEQUENCE = (10071, 10164)  # JSStreamWrongLastSequence(Constant)Err
_LATEST = re.compile(r"wrong last sequence: (\d+)")


def _stale(revision: int, description: str | None, doing: str) -> str:
    """The conflict's detail: the revision expected and, from the server's answer, the latest.

    JetStream answers ``wrong last sequence: <latest>``; 0 means the key has no revision.
    """
    expected = f"expected revision {revision}" + (f" {doing}" if doing else "")
    found = _LATEST.search(description or "")
    if found is None:
        return f"{expected}, but it is not the latest ({description})"
    latest = int(found.group(1))
    if latest == 0:
        return f"{expected}, but the key has no revision"
    return f"{expected}, but the latest is {latest}"


class NatsKeyValue(KeyValue):
    """A JetStream KV bucket.

    Args:
        bucket: The bucket name.
        kv: nats-py's handle on the bucket.
        js: The JetStream context it was opened with (`keys` reads the bucket's stream).
        timeout: Seconds `keys` waits for the server, at most.
    """

    def __init__(self, bucket: str, kv: NatsKV, js: JetStreamContext, timeout: float) -> None:
        self.bucket = bucket
        self._kv = kv
        self._js = js
        self._timeout = timeout

    async def get(self, key: str) -> KVEntry | None:
        """The latest live entry of ``key``, or None."""
        try:
            entry = await self._kv.get(key)
        except (js_errors.KeyNotFoundError, js_errors.KeyDeletedError):
            return None
        return self._entry(key, entry.value or b"", entry.revision or 0, "put", entry.created)

    async def put(self, key: str, value: bytes) -> int:
        """Write ``value``; return its revision."""
        return await self._kv.put(key, value)

    async def create(self, key: str, value: bytes) -> int:
        """Write only if ``key`` has no live entry."""
        try:
            return await self._kv.create(key, value)
        except js_errors.KeyWrongLastSequenceError:
            raise KVConflict(self.bucket, key, "the key already exists") from None

    async def update(self, key: str, value: bytes, revision: int) -> int:
        """Write only if the latest revision of ``key`` is ``revision``."""
        try:
            return await self._kv.update(key, value, last=revision)
        except js_errors.KeyWrongLastSequenceError as exc:
            raise KVConflict(self.bucket, key, _stale(revision, exc.description, "")) from None

    async def delete(self, key: str, *, revision: int | None = None) -> None:
        """Write a deletion marker for ``key``.

        With ``revision``, only if that is the latest revision of ``key``: the marker is
        published with ``Nats-Expected-Last-Subject-Sequence``, so JetStream itself refuses
        it when another write came in between (`KVConflict`, nothing deleted).
        """
        if revision is None:
            await self._kv.delete(key)
            return
        try:
            await self._kv.delete(key, last=check_revision(revision))
        except js_errors.APIError as exc:
            # nats-py turns this code into KeyWrongLastSequenceError for update, not delete.
            if exc.err_code not in _WRONG_LAST_SEQUENCE:
                raise
            raise KVConflict(
                self.bucket, key, _stale(revision, exc.description, "to delete")
            ) from None

    async def keys(self) -> list[str]:
        """The keys with a live entry, sorted.

        Read with an ordered consumer over the last entry of each key, to the entry the
        server says is the last (its ``num_pending`` is 0). nats-py's own ``keys()`` decides
        the bucket is empty when the consumer has nothing pending *and its client has counted
        no message yet*, which races the messages already on their way: under load it
        returned no key, or fewer, for a bucket that had them (a group whose members were not
        found). Here emptiness is what the server counted as delivered.

        Raises:
            TimeoutError: The server sent no last entry within the timeout.
        """
        prefix = f"$KV.{self.bucket}."
        live: set[str] = set()
        last = asyncio.get_running_loop().create_future()

        async def take(msg: Msg) -> None:
            key = msg.subject[len(prefix) :]
            if (msg.headers or {}).get("KV-Operation") in _DELETE_OPS:
                live.discard(key)
            else:
                live.add(key)
            if msg.metadata.num_pending == 0 and not last.done():
                last.set_result(None)

        sub = await self._js.subscribe(
            prefix + ">",
            stream=f"KV_{self.bucket}",
            cb=take,
            ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
            headers_only=True,
        )
        try:
            info = await sub.consumer_info()
            delivered = info.delivered.consumer_seq if info.delivered is not None else 0
            if not (info.num_pending == 0 and not delivered):  # else: nothing to read
                await asyncio.wait_for(asyncio.shield(last), self._timeout)
        finally:
            await sub.unsubscribe()
        return sorted(live)

    def watch(self, pattern: str = ">") -> AsyncIterator[KVEntry]:
        """Every change to keys matching ``pattern`` from now on.

        The server-side watcher starts at once (not at the first iteration), so a write made
        right after this call is seen. Close the iterator (``aclose()``) to stop watching.
        """
        starting = asyncio.ensure_future(self._kv.watch(pattern))
        return self._changes(starting)

    async def started_watch(self, pattern: str = ">") -> AsyncIterator[KVEntry]:
        """`watch`, returned once the server-side watcher (an ordered consumer) exists."""
        started = asyncio.get_running_loop().create_future()
        started.set_result(await self._kv.watch(pattern))
        return self._changes(started)

    async def _changes(self, starting: asyncio.Future[NatsKV.KeyWatcher]) -> AsyncIterator[KVEntry]:
        watcher = await starting
        try:
            initial = True
            async for update in watcher:
                if update is None:  # the end of the values that existed before the watch
                    initial = False
                    continue
                if initial:
                    continue
                op: Literal["put", "delete"] = (
                    "delete" if update.operation in _DELETE_OPS else "put"
                )
                yield self._entry(
                    update.key, update.value or b"", update.revision or 0, op, update.created
                )
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py is untyped here

    def _entry(
        self,
        key: str,
        value: bytes,
        revision: int,
        operation: Literal["put", "delete"],
        created: object,
    ) -> KVEntry:
        when = created if isinstance(created, datetime) else datetime.now(UTC)
        return KVEntry(self.bucket, key, value, revision, when, operation)
