"""Backend configs: the one class a backend adapter writes to run the conformance kit.

A config says how to make the backend under test and its settings, which capabilities it has,
and how to let time pass. It carries the fixtures every testcase uses, so an adapter's test
module is one line per testcase:

```python
class TestRedelivery(NatsConfig, RedeliveryTestcase):
    pass
```
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import pytest_asyncio

from aclbus.backend import Backend, Capabilities, StreamSpec
from aclbus.backends.memory import Faults, ManualClock, MemoryBackend, MemoryServer
from aclbus.settings import Settings

if TYPE_CHECKING:
    from aclbus.bus import Bus

__all__ = ["BackendConfig", "MemoryConfig"]


class BackendConfig:
    """How to run the conformance kit against one backend; subclass it once per backend.

    Set `name` and `capabilities`, implement `make_backend`, and override `advance` if the
    backend has a clock of its own. Each test gets a fresh instance, so a config may keep
    per-test state on ``self`` (a clock, a server handle).

    Every test works under its own `namespace`: its stream, subjects and (for bus tests) the
    subject prefix are made from it, so tests may share one server without seeing each other.

    Attributes:
        name: The backend's name, as in skip reasons (``"nats"``).
        capabilities: What the backend can do; tests that need more are skipped.
        load_entry_points: Whether buses made by `make_bus` load the installed plugins.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    load_entry_points: ClassVar[bool] = False

    _namespace: str | None = None

    # -- what an adapter provides ---------------------------------------------------------

    def make_backend(self) -> Backend:
        """Make a new, not yet connected backend for this test.

        Raises:
            NotImplementedError: The config does not implement it.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement make_backend(); a conformance testcase is "
            "run by mixing it with a backend config: class TestX(MyConfig, XTestcase): pass"
        )

    def make_settings(self, **overrides: Any) -> Settings:
        """The settings of a bus under test: this backend and this test's subject prefix.

        Args:
            **overrides: Other settings fields to set.
        """
        values: dict[str, Any] = {"backend": self.name, "subject_prefix": self.namespace}
        values.update(overrides)
        return Settings(**values)

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for the backend: the one way a conformance test waits.

        The default sleeps for real, which is right for a real server. A backend with a
        manual clock advances it instead (`MemoryConfig`), so the tests run instantly.
        Afterwards, work made due by the passing of time (redeliveries, timeouts) has run.

        Args:
            seconds: How long; 0 only lets pending work run.
        """
        await asyncio.sleep(seconds)

    # -- naming ----------------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        """A token unique to this test (``t`` + 12 hex digits), used in every name it makes."""
        if self._namespace is None:
            self._namespace = "t" + uuid.uuid4().hex[:12]
        return self._namespace

    def subject(self, *tokens: str) -> str:
        """A subject inside this test's stream (stored when published ``at_least_once``)."""
        return ".".join(("conf", self.namespace, "s", *tokens))

    def core_subject(self, *tokens: str) -> str:
        """A subject that no stream captures, for ``at_most_once`` traffic and requests."""
        return ".".join(("conf", self.namespace, "c", *tokens))

    def stream_spec(self, **overrides: Any) -> StreamSpec:
        """The stream the `backend` fixture provisions: it captures every `subject`.

        Args:
            **overrides: `StreamSpec` fields to change (a test provisioning a variant
                must also change ``name`` and ``subjects``).
        """
        values: dict[str, Any] = {
            "name": f"CONF_{self.namespace.upper()}",
            "subjects": (f"conf.{self.namespace}.s.>",),
            "storage": "memory",
        }
        values.update(overrides)
        return StreamSpec(**values)

    # -- fixtures --------------------------------------------------------------------------

    @pytest_asyncio.fixture
    async def backend(self) -> AsyncIterator[Backend]:
        """A connected backend with this test's stream provisioned; closed after the test."""
        backend = self.make_backend()
        await backend.connect()
        try:
            await backend.provision(self.stream_spec())
            yield backend
        finally:
            await backend.close()

    @pytest_asyncio.fixture
    async def bus(self) -> AsyncIterator[Bus]:
        """A started `Bus` on a backend of its own (made by `make_backend`); stopped after."""
        async with self.make_bus() as bus:
            yield bus

    def make_bus(self, *, plugins: Sequence[object] = (), **settings: Any) -> Bus:
        """A new, not yet started `Bus` on a new backend, with this test's settings.

        Installed plugins (the ``aclbus`` entry points) are not loaded unless
        `load_entry_points` says so, so that the kit tests the backend, not whatever else
        happens to be installed; a plugin's own tests pass it in ``plugins``.

        Args:
            plugins: Plugin objects (with hookimpls) to load.
            **settings: Settings fields to override (see `make_settings`).
        """
        from aclbus.bus import Bus

        return Bus(
            self.make_settings(**settings),
            plugins=plugins,
            backend=self.make_backend(),
            entry_points=self.load_entry_points,
        )


class MemoryConfig(BackendConfig):
    """The in-memory engine under a `ManualClock`: time passes only when a test says so.

    Every backend a test makes joins one `MemoryServer`, as every connection of a test joins
    one server on a real broker: two buses of one test see each other's messages.

    Attributes:
        seed: Seed of the engine's randomness (fault injection).
    """

    name: ClassVar[str] = MemoryBackend.name
    capabilities: ClassVar[Capabilities] = MemoryBackend.capabilities
    seed: ClassVar[int] = 0

    _clock: ManualClock | None = None
    _server: MemoryServer | None = None

    @property
    def clock(self) -> ManualClock:
        """This test's clock."""
        if self._clock is None:
            self._clock = ManualClock()
        return self._clock

    @property
    def server(self) -> MemoryServer:
        """This test's engine state, on `clock`, with the faults of `make_faults`."""
        if self._server is None:
            self._server = MemoryServer(clock=self.clock, faults=self.make_faults(), seed=self.seed)
        return self._server

    def make_faults(self) -> Faults | None:
        """The faults to inject; None (the default) runs the engine faithfully."""
        return None

    def make_backend(self) -> Backend:
        """A `MemoryBackend` joined to this test's `server`."""
        return MemoryBackend(self.make_settings(), server=self.server)

    async def advance(self, seconds: float) -> None:
        """Advance the manual clock at once, firing due timers and running what they woke."""
        await self.clock.advance(seconds)
