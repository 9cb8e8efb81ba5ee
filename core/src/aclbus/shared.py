"""Shared state: a KV-backed map that agents on one broker read, update and watch.

`SharedMap` keeps JSON values (or instances of a pydantic model) in a KV bucket of its own,
``{prefix}-shared-{name}``. Writes are plain (`SharedMap.put`), create-only
(`SharedMap.create`) or compare-and-set on the revision read before (`SharedMap.update`,
`SharedMap.modify`), so two agents that update one key at the same time never lose a write
silently: one of them gets `KVConflict` and tries again.

Example:
    ```python
    counters: SharedMap[int] = bus.shared_map("counters")
    await counters.modify("jobs", lambda n: (n or 0) + 1)
    ```
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Generic, Literal, Self, TypeVar, cast

import orjson
from pydantic import BaseModel, ValidationError

from aclbus.backend import KeyValue, KVConflict, KVEntry, KVSpec
from aclbus.errors import ACLBusError, CapabilityError, ConfigurationError, InvalidIdentifier
from aclbus.subjects import validate_id

if TYPE_CHECKING:
    from aclbus.bus_core import BusCore

__all__ = [
    "Change",
    "SharedEntry",
    "SharedMap",
    "SharedValueError",
    "SharedWatch",
    "validate_key",
    "validate_key_pattern",
]

log = logging.getLogger("aclbus.shared")

V = TypeVar("V")

DEFAULT_MODIFY_ATTEMPTS = 10
"""How many read-modify-write rounds `SharedMap.modify` tries before it gives up."""


class SharedValueError(ACLBusError, ValueError):
    """A value that cannot be stored in, or read from, a shared map.

    Raised on write when the value is not JSON-serialisable or not valid for the map's model,
    and on read when the stored bytes are not valid JSON or not valid for the model (another
    program wrote them).

    Attributes:
        map: The map's name.
        key: The key whose value is wrong.
        problem: What is wrong, in words.
    """

    def __init__(self, map_name: str, key: str, problem: str) -> None:
        self.map = map_name
        self.key = key
        self.problem = problem
        super().__init__(f"shared map {map_name!r}, key {key!r}: {problem}")


def _key_error(value: object, reason: str, kind: str) -> InvalidIdentifier:
    return InvalidIdentifier(kind, value, reason)


def validate_key(key: object, kind: str = "shared map key") -> str:
    """Return ``key`` if it is an id or dotted ids (``jobs``, ``agents.planner``).

    Raises:
        InvalidIdentifier: Not a string, empty, an empty token, or a token with a character
            outside ``[A-Za-z0-9_-]``.
    """
    if not isinstance(key, str) or not key:
        raise _key_error(key, "expected a non-empty string of dot-separated ids", kind)
    for i, token in enumerate(key.split(".")):
        try:
            validate_id(token, "token")
        except InvalidIdentifier as exc:
            raise _key_error(key, f"token {i + 1}: {exc}", kind) from None
    return key


def validate_key_pattern(pattern: object) -> str:
    """Return a watch pattern: dotted ids with ``*`` (one token) and a final ``>`` (the rest).

    Raises:
        InvalidIdentifier: A bad token or a misplaced ``>``.
    """
    kind = "shared map key pattern"
    if not isinstance(pattern, str) or not pattern:
        raise _key_error(pattern, "expected a non-empty string such as '>' or 'jobs.*'", kind)
    tokens = pattern.split(".")
    for i, token in enumerate(tokens):
        if token == "*" or (token == ">" and i == len(tokens) - 1):
            continue
        if token == ">":
            raise _key_error(pattern, "'>' is only allowed as the last token", kind)
        try:
            validate_id(token, "token")
        except InvalidIdentifier as exc:
            raise _key_error(pattern, f"token {i + 1}: {exc}", kind) from None
    return pattern


@dataclass(frozen=True, slots=True)
class SharedEntry(Generic[V]):
    """A value of a shared map with its revision.

    Attributes:
        key: The key.
        value: The value (decoded, validated against the map's model if it has one).
        revision: The revision to pass to `SharedMap.update` for a compare-and-set.
        updated: When the value was written (UTC, as the broker recorded it).
    """

    key: str
    value: V
    revision: int
    updated: datetime


@dataclass(frozen=True, slots=True)
class Change(Generic[V]):
    """One change to a shared map, as `SharedMap.watch` reports it.

    Attributes:
        key: The key that changed.
        operation: ``"put"`` (a new value) or ``"delete"``.
        value: The new value; None for a deletion.
        revision: The revision of the change.
        updated: When it was written (UTC).
    """

    key: str
    operation: Literal["put", "delete"]
    value: V | None
    revision: int
    updated: datetime


class SharedMap(Generic[V]):
    """A map shared by every bus on the broker: JSON values by dotted-id keys, on a KV bucket.

    Made by `Bus.shared_map`; the bucket is provisioned on first use. Every method may raise
    `BackendClosed` when the bus is not running.

    Args:
        bus: The bus whose backend holds the bucket.
        name: The map's name (an id); maps of one name on one broker are the same map.
        model: A pydantic model: values are instances of it, validated on write and on read.
            None: any JSON value (encoded with orjson).

    Raises:
        InvalidIdentifier: ``name`` is not an id.
        CapabilityError: The backend has no key-value buckets.
    """

    def __init__(self, bus: BusCore, name: str, *, model: type[BaseModel] | None = None) -> None:
        if not bus.backend.capabilities.kv:
            raise CapabilityError("shared maps", bus.backend.name, ["kv"])
        if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise ConfigurationError(f"model must be a pydantic model class, got {model!r}")
        self._bus = bus
        self.name = validate_id(name, "shared map name")
        self.model = model
        self.bucket = bus.subjects.bucket("shared", name)
        self._kv: KeyValue | None = None

    def __repr__(self) -> str:
        return f"SharedMap({self.name!r}, bucket={self.bucket!r})"

    # -- the bucket and the codec -----------------------------------------------------------

    async def kv(self) -> KeyValue:
        """The map's KV bucket, provisioned on first use (provisioning one again is harmless).

        What `SharedWatch` watches. A value written to it directly skips the map's checks.
        """
        if self._kv is None:
            backend = self._bus.backend
            limits = self._bus.settings.streams
            await backend.provision(
                KVSpec(
                    bucket=self.bucket,
                    history=1,
                    replicas=limits.replicas,
                    storage="memory" if limits.storage == "memory" else "file",
                )
            )
            self._kv = await backend.kv(self.bucket)
        return self._kv

    def _encode(self, key: str, value: V) -> bytes:
        if self.model is not None:
            try:
                checked = self.model.model_validate(value)
            except ValidationError as exc:
                raise SharedValueError(self.name, key, _validation_problem(exc)) from None
            return checked.model_dump_json().encode()
        try:
            return orjson.dumps(value)
        except TypeError as exc:
            raise SharedValueError(
                self.name, key, f"value is not JSON-serialisable: {exc}"
            ) from None

    def _decode(self, key: str, data: bytes) -> V:
        if self.model is not None:
            try:
                return cast(V, self.model.model_validate_json(data))
            except ValidationError as exc:
                problem = f"stored value is not a valid {self.model.__name__}: "
                raise SharedValueError(self.name, key, problem + _validation_problem(exc)) from None
        try:
            return cast(V, orjson.loads(data))
        except orjson.JSONDecodeError as exc:
            raise SharedValueError(self.name, key, f"stored value is not JSON: {exc}") from None

    def _entry(self, entry: KVEntry) -> SharedEntry[V]:
        return SharedEntry(
            entry.key, self._decode(entry.key, entry.value), entry.revision, entry.created
        )

    # -- reading ----------------------------------------------------------------------------

    async def get(self, key: str) -> V | None:
        """The value of ``key``, or None if it has none.

        Raises:
            InvalidIdentifier: ``key`` is not a dotted id.
            SharedValueError: The stored value is not valid (JSON, or for the model).
        """
        entry = await self.entry(key)
        return entry.value if entry is not None else None

    async def entry(self, key: str) -> SharedEntry[V] | None:
        """The value of ``key`` with its revision and time, or None if it has none.

        Raises:
            InvalidIdentifier: ``key`` is not a dotted id.
            SharedValueError: The stored value is not valid (JSON, or for the model).
        """
        found = await (await self.kv()).get(validate_key(key))
        return self._entry(found) if found is not None else None

    async def keys(self) -> list[str]:
        """The keys that have a value, sorted."""
        return await (await self.kv()).keys()

    async def items(self) -> list[tuple[str, V]]:
        """Every key with its value, sorted by key (a key deleted meanwhile is left out).

        Raises:
            SharedValueError: A stored value is not valid.
        """
        result: list[tuple[str, V]] = []
        for key in await self.keys():
            entry = await self.entry(key)
            if entry is not None:
                result.append((key, entry.value))
        return result

    # -- writing ----------------------------------------------------------------------------

    async def put(self, key: str, value: V) -> int:
        """Set ``key`` to ``value`` whatever it was; return the new revision.

        Raises:
            InvalidIdentifier: ``key`` is not a dotted id.
            SharedValueError: ``value`` is not JSON-serialisable, or not valid for the model.
        """
        data = self._encode(validate_key(key), value)
        return await (await self.kv()).put(key, data)

    async def create(self, key: str, value: V) -> int:
        """Set ``key`` only if it has no value; return the new revision.

        Raises:
            KVConflict: ``key`` has a value already.
            InvalidIdentifier: ``key`` is not a dotted id.
            SharedValueError: ``value`` is not valid.
        """
        data = self._encode(validate_key(key), value)
        return await (await self.kv()).create(key, data)

    async def update(self, key: str, value: V, revision: int) -> int:
        """Set ``key`` only if its latest revision is still ``revision`` (compare-and-set).

        Returns:
            The new revision.

        Raises:
            KVConflict: Someone wrote (or deleted) ``key`` after ``revision``.
            InvalidIdentifier: ``key`` is not a dotted id.
            SharedValueError: ``value`` is not valid.
        """
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
            raise ConfigurationError(f"revision must be a positive int, got {revision!r}")
        data = self._encode(validate_key(key), value)
        return await (await self.kv()).update(key, data, revision)

    async def modify(
        self,
        key: str,
        fn: Callable[[V | None], V | Awaitable[V]],
        *,
        attempts: int = DEFAULT_MODIFY_ATTEMPTS,
    ) -> SharedEntry[V]:
        """Read ``key``, compute its new value with ``fn``, write it if nobody wrote meanwhile.

        ``fn`` gets the current value (None if the key has none) and returns the new one; it
        may be async. When another writer got in between, the whole round is done again with
        the value that writer left, so ``fn`` must have no side effects beyond its result.

        Args:
            key: The key.
            fn: Current value to new value.
            attempts: Rounds at most before giving up.

        Returns:
            The value written, with its revision (``updated`` is this process' clock).

        Raises:
            KVConflict: Other writers won ``attempts`` rounds in a row.
            InvalidIdentifier: ``key`` is not a dotted id.
            SharedValueError: A stored or computed value is not valid.
        """
        if attempts < 1:
            raise ConfigurationError(f"attempts must be at least 1, got {attempts!r}")
        validate_key(key)
        store = await self.kv()
        last: KVConflict | None = None
        for _ in range(attempts):
            current = await store.get(key)
            old = self._decode(key, current.value) if current is not None else None
            new = fn(old)
            if inspect.isawaitable(new):
                new = await new
            value = cast(V, new)
            data = self._encode(key, value)
            try:
                if current is None:
                    revision = await store.create(key, data)
                else:
                    revision = await store.update(key, data, current.revision)
            except KVConflict as exc:
                last = exc
                continue
            return SharedEntry(key, value, revision, _now(self._bus))
        raise KVConflict(
            self.bucket, key, f"modify() lost the race {attempts} times in a row: {last}"
        )

    async def delete(self, key: str) -> None:
        """Remove ``key`` (watchers see a ``delete``); nothing happens if it has no value.

        Raises:
            InvalidIdentifier: ``key`` is not a dotted id.
        """
        store = await self.kv()
        if await store.get(validate_key(key)) is not None:
            await store.delete(key)

    # -- watching ---------------------------------------------------------------------------

    def watch(self, pattern: str = ">") -> SharedWatch[V]:
        """The changes to the keys matching ``pattern``, from when the watch starts.

        Use it as an async context manager (the watch starts on entry and stops on exit) or
        iterate it directly (it starts at the first iteration; `SharedWatch.aclose` stops it):

        ```python
        async with shared.watch("jobs.*") as changes:
            async for change in changes:
                print(change.key, change.operation, change.value)
        ```

        A change whose stored value is not valid is logged and skipped, so one bad writer
        cannot end another agent's watch.

        Raises:
            InvalidIdentifier: ``pattern`` is not dotted ids with ``*`` and a final ``>``.
        """
        return SharedWatch(self, validate_key_pattern(pattern))

    def change(self, entry: KVEntry) -> Change[V] | None:
        """The `Change` an entry of the bucket stands for; None (logged) if its value is bad."""
        if entry.operation == "delete":
            return Change(entry.key, "delete", None, entry.revision, entry.created)
        try:
            value = self._decode(entry.key, entry.value)
        except SharedValueError as exc:
            log.warning("shared map %s: skipped a change: %s", self.name, exc)
            return None
        return Change(entry.key, "put", value, entry.revision, entry.created)


class SharedWatch(Generic[V]):
    """A running watch of a `SharedMap`: an async iterator of `Change`, and a context manager.

    Args:
        shared: The map.
        pattern: The keys to watch (checked).
    """

    def __init__(self, shared: SharedMap[V], pattern: str) -> None:
        self._shared = shared
        self.pattern = pattern
        self._source: AsyncIterator[KVEntry] | None = None
        self._closed = False

    async def start(self) -> Self:
        """Start watching (done by ``async with`` and by the first iteration); idempotent."""
        if self._source is None and not self._closed:
            store = await self._shared.kv()
            self._source = await store.started_watch(self.pattern)
        return self

    async def aclose(self) -> None:
        """Stop watching; the iteration ends. Idempotent."""
        self._closed = True
        source, self._source = self._source, None
        closer = getattr(source, "aclose", None)
        if closer is not None:
            try:
                await closer()
            except RuntimeError:  # an async generator still running in another task
                log.debug("shared map %s: watch closed while in use", self._shared.name)

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

    async def __anext__(self) -> Change[V]:
        await self.start()
        while True:
            source = self._source
            if source is None:
                raise StopAsyncIteration
            entry = await source.__anext__()
            change = self._shared.change(entry)
            if change is not None:
                return change


def _validation_problem(exc: ValidationError) -> str:
    """Pydantic's errors in one line: ``field.sub: message; …`` (no input values)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "value"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _now(bus: BusCore) -> datetime:
    """The wall-clock time of the bus' backend (a test's manual clock on the memory engine)."""
    return bus.backend.clock.wall()
