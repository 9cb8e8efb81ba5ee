"""`Directory`: agents' descriptions in a KV bucket, their presence in another, and a watch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from aclbus.backend import KVEntry
from aclbus.directory.description import AgentDescription, InvalidDescription
from aclbus.directory.presence import Heartbeat, Presence
from aclbus.directory.stores import DirectoryStores
from aclbus.dlq import redact
from aclbus.errors import CapabilityError, ConfigurationError
from aclbus.subjects import validate_id

if TYPE_CHECKING:
    from aclbus.bus_core import BusCore

__all__ = ["ChangeKind", "Directory", "DirectoryChange", "DirectoryWatch"]

log = logging.getLogger("aclbus.directory")

ChangeKind = Literal["registered", "updated", "deregistered", "available", "unavailable"]
"""What happened to an agent, as `Directory.watch` reports it."""


@dataclass(frozen=True, slots=True)
class DirectoryChange:
    """One change seen by `Directory.watch`.

    Attributes:
        kind: ``registered`` (a new description), ``updated`` (a description replaced),
            ``deregistered`` (description removed), ``available`` (heartbeats started or came
            back), ``unavailable`` (a clean stop, or no beat for 3 intervals).
        agent_id: The agent.
        description: The new description (``registered``, ``updated``), else None.
        presence: The beat that made the agent available (``available``), else None.
    """

    kind: ChangeKind
    agent_id: str
    description: AgentDescription | None = None
    presence: Presence | None = None


class Directory:
    """The directory of agents on the broker, with presence by heartbeat.

    Descriptions live in the KV bucket ``{prefix}-directory`` (key: the agent id, value: the
    description as JSON), presence records in ``{prefix}-presence`` (a bucket with a TTL of
    ``settings.directory.presence_ttl``). `Bus.directory` makes one per bus; `Bus.stop`
    closes it, which deregisters every agent registered through it.

    Args:
        bus: The bus whose backend holds the buckets.

    Raises:
        CapabilityError: The backend has no key-value buckets.
    """

    def __init__(self, bus: BusCore) -> None:
        if not bus.backend.capabilities.kv:
            raise CapabilityError("the agent directory", bus.backend.name, ["kv"])
        self.settings = bus.settings.directory
        self.bucket = bus.subjects.bucket("directory")
        self.presence_bucket = bus.subjects.bucket("presence")
        self._stores = DirectoryStores(bus.backend, bus.settings, self.bucket, self.presence_bucket)
        self._heartbeats: dict[str, Heartbeat] = {}
        self._watches: weakref.WeakSet[DirectoryWatch] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"Directory(bucket={self.bucket!r}, registered={sorted(self._heartbeats)!r})"

    @property
    def stores(self) -> DirectoryStores:
        """Its two buckets (provisioned on first use) and their backend's clock."""
        return self._stores

    # -- registering ------------------------------------------------------------------------

    @property
    def registered(self) -> list[str]:
        """The agents registered through this directory (and beating), sorted."""
        return sorted(self._heartbeats)

    async def register(
        self,
        description: AgentDescription | Mapping[str, Any],
        *,
        heartbeat: float | None = None,
    ) -> AgentDescription:
        """Publish an agent's description and keep it available by heartbeats until stopped.

        Registering an agent again replaces its description (watchers see ``updated``) and its
        heartbeat interval. The first beat is written before this returns, so the agent is
        available at once.

        Args:
            description: The description, or a mapping of its fields.
            heartbeat: Seconds between beats; None: ``settings.directory.heartbeat_interval``.

        Returns:
            The description as stored.

        Raises:
            InvalidDescription: ``description`` is not valid.
            ConfigurationError: ``heartbeat`` is not positive, or the presence TTL is shorter
                than two of its intervals (the record would expire between beats).
        """
        desc = _description(description)
        interval = self.settings.heartbeat_interval if heartbeat is None else heartbeat
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not math.isfinite(interval)
            or interval <= 0
        ):
            raise ConfigurationError(f"heartbeat must be positive seconds, got {interval!r}")
        if 2 * interval > self.settings.presence_ttl:
            raise ConfigurationError(
                f"heartbeat of {interval:g} s is too long for the presence TTL of "
                f"{self.settings.presence_ttl:g} s (ACLBUS_DIRECTORY__PRESENCE_TTL): use at most "
                f"{self.settings.presence_ttl / 2:g} s or raise the TTL"
            )
        interval = float(interval)
        agent_id = desc.agent_id
        previous = self._heartbeats.pop(agent_id, None)
        if previous is not None:
            await previous.stop()
        descriptions, _ = await self._stores.open()
        await descriptions.put(agent_id, desc.to_json())

        async def beat() -> None:
            await self._beat(agent_id, interval)

        await beat()
        heart = Heartbeat(agent_id, interval, beat, self._stores.sleep)
        self._heartbeats[agent_id] = heart
        heart.start()
        return desc

    async def _beat(self, agent_id: str, interval: float) -> None:
        _, presence = await self._stores.open()
        await presence.put(agent_id, Presence(agent_id, self._stores.now(), interval).to_json())

    async def deregister(self, agent_id: str) -> bool:
        """Remove an agent from the directory at once: stop its beats, delete its records.

        Works for any agent id, also one registered by another bus (an operator removing a
        stale entry); a live agent elsewhere would beat itself available again, but its
        description stays removed until it registers again.

        Returns:
            Whether the agent had a description or a presence record.

        Raises:
            InvalidIdentifier: ``agent_id`` is not an id.
        """
        validate_id(agent_id)
        heart = self._heartbeats.pop(agent_id, None)
        if heart is not None:
            await heart.stop()
        descriptions, presence = await self._stores.open()
        found = False
        # Presence first: watchers see "unavailable" before "deregistered".
        if await presence.get(agent_id) is not None:
            await presence.delete(agent_id)
            found = True
        if await descriptions.get(agent_id) is not None:
            await descriptions.delete(agent_id)
            found = True
        return found

    async def close(self) -> None:
        """Deregister every agent registered through this directory and end its watches.

        Failures (the connection is already gone) are logged: the presence records then
        expire by themselves. Idempotent.
        """
        for agent_id in list(self._heartbeats):
            try:
                await self.deregister(agent_id)
            except Exception as exc:
                log.warning(
                    "agent %s: could not deregister: %s: %s",
                    agent_id,
                    type(exc).__name__,
                    redact(str(exc)),
                )
        for watch in list(self._watches):
            await watch.aclose()

    # -- reading ----------------------------------------------------------------------------

    async def get(self, agent_id: str) -> AgentDescription | None:
        """The description of ``agent_id`` (available or not), or None if it has none.

        Raises:
            InvalidIdentifier: ``agent_id`` is not an id.
            InvalidDescription: The stored description is not valid (another writer).
        """
        descriptions, _ = await self._stores.open()
        entry = await descriptions.get(validate_id(agent_id))
        return _read_description(entry) if entry is not None else None

    async def presence(self, agent_id: str) -> Presence | None:
        """The last beat of ``agent_id``, or None if there is none (or it is unreadable).

        Raises:
            InvalidIdentifier: ``agent_id`` is not an id.
        """
        _, presence = await self._stores.open()
        entry = await presence.get(validate_id(agent_id))
        return _read_presence(entry) if entry is not None else None

    async def is_available(self, agent_id: str) -> bool:
        """Whether ``agent_id`` beat less than 3 of its intervals ago.

        Raises:
            InvalidIdentifier: ``agent_id`` is not an id.
        """
        beat = await self.presence(agent_id)
        return beat is not None and beat.available(self._stores.now())

    async def available(self) -> list[str]:
        """The ids of the agents available now, sorted."""
        _, presence = await self._stores.open()
        keys = await presence.keys()
        entries = await asyncio.gather(*(presence.get(key) for key in keys))
        now = self._stores.now()
        beats = [_read_presence(e) for e in entries if e is not None]
        return sorted(b.agent_id for b in beats if b is not None and b.available(now))

    async def search(
        self,
        *,
        skill: str | None = None,
        protocol: str | None = None,
        ontology: str | None = None,
        available: bool | None = True,
    ) -> list[AgentDescription]:
        """The descriptions that have the skill, protocol and ontology asked for.

        Matching is exact; None matches anything. A stored description that is not valid is
        logged and left out.

        Args:
            skill: A skill the agent must have.
            protocol: A protocol it must speak.
            ontology: An ontology it must use.
            available: True: only agents available now; False: only unavailable ones;
                None: all.

        Returns:
            The matching descriptions, sorted by agent id.
        """
        descriptions, _ = await self._stores.open()
        keys = await descriptions.keys()
        entries = await asyncio.gather(*(descriptions.get(key) for key in keys))
        found: list[AgentDescription] = []
        for entry in entries:
            if entry is None:
                continue
            try:
                desc = _read_description(entry)
            except InvalidDescription as exc:
                log.warning("directory: skipped an entry: %s", exc)
                continue
            if desc.matches(skill=skill, protocol=protocol, ontology=ontology):
                found.append(desc)
        if available is not None:
            live = set(await self.available())
            found = [d for d in found if (d.agent_id in live) is available]
        return sorted(found, key=lambda d: d.agent_id)

    def watch(self) -> DirectoryWatch:
        """The changes to the directory and to agents' availability, from when it starts.

        Use it as an async context manager, or iterate it (it starts at the first iteration):

        ```python
        async with bus.directory.watch() as changes:
            async for change in changes:
                print(change.kind, change.agent_id)
        ```

        ``unavailable`` is reported for a clean stop at once and for a dead agent when its
        last beat turns 3 intervals old (the watch keeps the deadlines itself). The changes
        of one agent's description and of its presence come from two buckets, so their
        relative order is not guaranteed.
        """
        watch = DirectoryWatch(self)
        self._watches.add(watch)
        return watch


class _End:
    """Marks the end of a watch's events."""


_END = _End()


class DirectoryWatch:
    """A running watch of a `Directory`: an async iterator of `DirectoryChange`.

    Args:
        directory: The directory.
    """

    def __init__(self, directory: Directory) -> None:
        self._directory = directory
        self._now = directory.stores.now
        self._sleep = directory.stores.sleep
        self._events: asyncio.Queue[DirectoryChange | _End] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._sources: list[AsyncIterator[KVEntry]] = []
        self._known: set[str] = set()
        self._deadlines: dict[str, float] = {}
        self._changed = asyncio.Event()
        self._started = False
        self._closed = False

    async def start(self) -> Self:
        """Start watching (done by ``async with`` and by the first iteration); idempotent."""
        if self._started or self._closed:
            return self
        self._started = True
        descriptions, presence = await self._directory.stores.open()
        self._sources = [
            await descriptions.started_watch(">"),
            await presence.started_watch(">"),
        ]
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._pump(self._sources[0], self._on_description)),
            loop.create_task(self._pump(self._sources[1], self._on_presence)),
        ]
        # What is there already, so that the first change of a known agent reads right.
        self._known = set(await descriptions.keys())
        now = self._now()
        for key in await presence.keys():
            entry = await presence.get(key)
            beat = _read_presence(entry) if entry is not None else None
            if beat is not None and beat.available(now):
                self._deadlines.setdefault(key, beat.deadline)
        self._tasks.append(loop.create_task(self._expire()))
        return self

    async def aclose(self) -> None:
        """Stop watching; the iteration ends. Idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for source in self._sources:
            closer = getattr(source, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()
        self._sources = []
        self._events.put_nowait(_END)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> DirectoryChange:
        await self.start()
        event = await self._events.get()
        if isinstance(event, _End):
            self._events.put_nowait(event)  # later calls end too
            raise StopAsyncIteration
        return event

    # -- inside ------------------------------------------------------------------------------

    def _emit(self, change: DirectoryChange) -> None:
        self._events.put_nowait(change)

    async def _pump(
        self, source: AsyncIterator[KVEntry], handle: Callable[[KVEntry], None]
    ) -> None:
        try:
            async for entry in source:
                handle(entry)
        except Exception as exc:  # the connection is gone: end the watch, do not crash
            log.warning("directory watch ended: %s: %s", type(exc).__name__, redact(str(exc)))
        self._events.put_nowait(_END)

    def _on_description(self, entry: KVEntry) -> None:
        if entry.operation == "delete":
            self._known.discard(entry.key)
            self._emit(DirectoryChange("deregistered", entry.key))
            return
        try:
            desc = _read_description(entry)
        except InvalidDescription as exc:
            log.warning("directory watch: skipped an entry: %s", exc)
            return
        kind: ChangeKind = "updated" if entry.key in self._known else "registered"
        self._known.add(entry.key)
        self._emit(DirectoryChange(kind, entry.key, description=desc))

    def _on_presence(self, entry: KVEntry) -> None:
        if entry.operation == "delete":
            if self._deadlines.pop(entry.key, None) is not None:
                self._changed.set()
                self._emit(DirectoryChange("unavailable", entry.key))
            return
        beat = _read_presence(entry)
        if beat is None or not beat.available(self._now()):
            return
        was_available = entry.key in self._deadlines
        self._deadlines[entry.key] = beat.deadline
        self._changed.set()
        if not was_available:
            self._emit(DirectoryChange("available", entry.key, presence=beat))

    async def _expire(self) -> None:
        """Report agents whose last beat turned 3 intervals old, when it does."""
        while True:
            now = self._now()
            for key, deadline in list(self._deadlines.items()):
                if deadline <= now:
                    del self._deadlines[key]
                    self._emit(DirectoryChange("unavailable", key))
            self._changed.clear()
            waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._changed.wait())]
            if self._deadlines:
                delay = min(self._deadlines.values()) - now
                waits.append(asyncio.ensure_future(_awaited(self._sleep(delay))))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
                await asyncio.gather(*waits, return_exceptions=True)


async def _awaited(awaitable: Awaitable[None]) -> None:
    await awaitable


def _description(value: object) -> AgentDescription:
    if isinstance(value, AgentDescription):
        return value
    if isinstance(value, Mapping):
        return AgentDescription(**dict(value))
    raise InvalidDescription(
        f"expected an AgentDescription or a mapping, got {type(value).__name__}"
    )


def _read_description(entry: KVEntry) -> AgentDescription:
    desc = AgentDescription.from_json(entry.value, agent_id=entry.key)
    if desc.agent_id != entry.key:
        raise InvalidDescription(
            f"stored under key {entry.key!r} but describes {desc.agent_id!r}", entry.key
        )
    return desc


def _read_presence(entry: KVEntry) -> Presence | None:
    try:
        return Presence.from_json(entry.value, entry.key)
    except Exception as exc:  # a bad writer's record: that agent is simply not available
        log.warning("directory: unreadable presence record %r: %s", entry.key, exc)
        return None
