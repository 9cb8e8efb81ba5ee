"""Loading plugins: the default ones, then the ``aclbus`` entry points, then explicit objects.

The default plugins (the JSON codec, the memory backend) are loaded the same way as
third-party ones, from their modules' hookimpls (datasette's ``default_plugins``).
``ACLBUS_PLUGINS`` is an allow-list of entry point names, ``ACLBUS_DISABLE_PLUGINS`` a deny
list that also applies to the default plugins. A hookimpl that matches no hookspec (a
misspelled hook) fails loading at once.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from aclbus.backend import BackendFactory, Capabilities
from aclbus.codec import Codec, CodecRegistry
from aclbus.errors import PluginError
from aclbus.plugin import PROJECT, spec

if TYPE_CHECKING:
    from aclbus.bench.columns import ColumnFactory
    from aclbus.middleware import MiddlewareFactory
    from aclbus.settings import Settings

__all__ = ["DEFAULT_PLUGINS", "PluginInfo", "PluginManager"]

log = logging.getLogger(__name__)

DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("json", "aclbus.codec"),
    ("memory", "aclbus.backends.memory"),
)
"""``(name, module)`` of the plugins shipped in the core, loaded before the entry points."""


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """A loaded plugin, as ``aclbus plugins`` lists it."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


class PluginManager:
    """The plugins of one bus, loaded and checked.

    Args:
        settings: Supplies the allow and deny lists.
        plugins: Extra plugin objects (modules, classes or instances with hookimpls), loaded
            after the entry points, e.g. in tests.
        entry_points: Whether to load the ``aclbus`` entry points.

    Raises:
        PluginError: A plugin fails to import, or implements a hook that does not exist.
    """

    def __init__(
        self,
        settings: Settings,
        plugins: Sequence[object] = (),
        *,
        entry_points: bool = True,
    ) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(spec)
        self._dists: dict[str, tuple[str | None, str | None]] = {}
        denied = set(settings.disable_plugins)
        allowed = None if settings.plugins is None else set(settings.plugins)
        for name, module in DEFAULT_PLUGINS:
            if name not in denied:
                self._register(importlib.import_module(module), name, ("aclbus", _version()))
        if entry_points:
            self._load_entry_points(allowed, denied)
        for i, plugin in enumerate(plugins):
            self._register(plugin, _name_of(plugin, i), (None, None))
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"{exc} (is the hook name misspelled?)") from None

    def _load_entry_points(self, allowed: set[str] | None, denied: set[str]) -> None:
        for ep in metadata.entry_points(group=PROJECT):
            if ep.name in denied or (allowed is not None and ep.name not in allowed):
                log.debug("plugin %s not loaded (ACLBUS_PLUGINS / ACLBUS_DISABLE_PLUGINS)", ep.name)
                continue
            if self.pm.has_plugin(ep.name):
                continue
            dist = (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} ({ep.value}, from {dist[0] or 'unknown distribution'}) "
                    f"failed to load: {type(exc).__name__}: {exc}"
                ) from exc
            self._register(plugin, ep.name, dist)

    def _register(self, plugin: object, name: str, dist: tuple[str | None, str | None]) -> None:
        try:
            self.pm.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginError(f"plugin {name!r} cannot be registered: {exc}") from None
        self._dists[name] = dist

    def info(self) -> list[PluginInfo]:
        """The loaded plugins with their distribution, version and the hooks they implement."""
        out = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or () if h.name))
            dist, version = self._dists.get(name, (None, None))
            module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__name__
            out.append(PluginInfo(name, module, dist, version, hooks))
        return out

    def backends(self) -> dict[str, BackendFactory]:
        """The backend factories registered by the plugins, by name."""
        found: dict[str, tuple[str, BackendFactory]] = {}

        def collect(owner: str) -> Callable[[str, BackendFactory], None]:
            def register(name: str, factory: BackendFactory) -> None:
                if not isinstance(name, str) or not name:
                    raise PluginError(f"plugin {owner!r} registered a backend with name {name!r}")
                if not callable(factory):
                    raise PluginError(
                        f"plugin {owner!r} registered backend {name!r} as {factory!r}, "
                        "which is not callable"
                    )
                if name in found and found[name][1] is not factory:
                    raise PluginError(
                        f"backend {name!r} is registered by both {found[name][0]!r} and {owner!r}"
                    )
                found[name] = (owner, factory)

            return register

        self._call_each("aclbus_register_backends", collect)
        return {name: factory for name, (_, factory) in found.items()}

    def benchmark_columns(self) -> dict[str, ColumnFactory]:
        """The ``aclbus bench`` column factories registered by the plugins, by name."""
        found: dict[str, tuple[str, ColumnFactory]] = {}

        def collect(owner: str) -> Callable[[str, ColumnFactory], None]:
            def register(name: str, factory: ColumnFactory) -> None:
                if not isinstance(name, str) or not name or not callable(factory):
                    raise PluginError(
                        f"plugin {owner!r} registered benchmark column {name!r} as "
                        f"{factory!r}: give a name and a callable"
                    )
                if name in found and found[name][1] is not factory:
                    raise PluginError(
                        f"benchmark column {name!r} is registered by both {found[name][0]!r} "
                        f"and {owner!r}"
                    )
                found[name] = (owner, factory)

            return register

        self._call_each("aclbus_register_benchmarks", collect)
        return {name: factory for name, (_, factory) in found.items()}

    def codecs(self) -> CodecRegistry:
        """A codec registry filled by the plugins (JSON first: it is the default)."""
        registry = CodecRegistry()

        def collect(owner: str) -> Callable[[Codec], None]:
            def register(codec: Codec) -> None:
                if not isinstance(codec, Codec):
                    raise PluginError(
                        f"plugin {owner!r} registered {codec!r}, which is not a Codec"
                    )
                try:
                    registry.register(codec)
                except Exception as exc:
                    raise PluginError(f"plugin {owner!r}: {exc}") from None

            return register

        self._call_each("aclbus_register_codecs", collect)
        return registry

    def middlewares(self, settings: Settings) -> list[MiddlewareFactory]:
        """The middleware factories of all plugins, outermost first."""
        out: list[MiddlewareFactory] = []
        for result in self.pm.hook.aclbus_middlewares(settings=settings):
            out.extend(result or ())
        return out

    def required_capabilities(self, settings: Settings) -> list[tuple[str, Capabilities]]:
        """``(plugin name, capabilities)`` for each plugin that requires some."""
        out: list[tuple[str, Capabilities]] = []
        for impl in self.pm.hook.aclbus_required_capabilities.get_hookimpls():
            caps = impl.function(settings=settings)
            if caps is None:
                continue
            if not isinstance(caps, Capabilities):
                raise PluginError(
                    f"plugin {impl.plugin_name!r} returned {caps!r} from "
                    "aclbus_required_capabilities, not a Capabilities"
                )
            out.append((impl.plugin_name, caps))
        return out

    def call_lifecycle(self, hook: str, **kwargs: Any) -> list[Any]:
        """Call a lifecycle hook and return its results (the bus awaits the awaitables)."""
        results: list[Any] = getattr(self.pm.hook, hook)(**kwargs)
        return results

    def _call_each(
        self,
        hook: str,
        make_register: Callable[[str], Callable[..., None]],
    ) -> None:
        # get_hookimpls() lists in registration order (the default plugins first), so the JSON
        # codec is registered first and becomes the default.
        impls: Iterable[Any] = getattr(self.pm.hook, hook).get_hookimpls()
        for impl in impls:
            try:
                impl.function(register=make_register(impl.plugin_name))
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in {hook}: {type(exc).__name__}: {exc}"
                ) from exc


def _version() -> str | None:
    try:
        return metadata.version("aclbus")
    except metadata.PackageNotFoundError:
        return None


def _name_of(plugin: object, index: int) -> str:
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    name = getattr(plugin, "__name__", None) or type(plugin).__name__
    return f"{name}#{index}"
