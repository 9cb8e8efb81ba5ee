"""Loading plugins: the default ones, then the ``aclbus`` entry points, then explicit objects.

The default plugins (the JSON codec, the memory backend) are loaded the same way as
third-party ones, from their modules' hookimpls (datasette's ``default_plugins``).
``ACLBUS_PLUGINS`` is an allow-list of entry point names, ``ACLBUS_DISABLE_PLUGINS`` a deny
list that also applies to the default plugins; neither ever leaves out the plugin of the
selected backend. A hookimpl that matches no hookspec (a misspelled hook) fails loading at
once, naming the plugin's entry point and distribution.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import Any, cast

import pluggy

from aclbus.backend import BackendFactory, Capabilities
from aclbus.codec import Codec, CodecRegistry
from aclbus.connection_options import ConnectionOptions
from aclbus.errors import PluginError
from aclbus.middleware import MiddlewareFactory
from aclbus.permissions import Permissions
from aclbus.plugin import PROJECT, spec
from aclbus.plugin.bench_columns import ColumnFactory
from aclbus.settings import Settings

__all__ = ["DEFAULT_PLUGINS", "PluginInfo", "PluginManager"]

log = logging.getLogger(__name__)

DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("json", "aclbus.plugin.json_codec"),
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

    ``settings.plugins`` (an allow-list) and ``settings.disable_plugins`` (a deny list) choose
    which plugins load, with one exception: the plugin that registers the selected backend
    (``settings.backend``) always loads, since the bus cannot run without it. Entry points
    load in the order of their names, so that the order of middlewares does not depend on
    the order in which packages happen to be installed.

    Args:
        settings: Supplies the allow and deny lists and the selected backend.
        plugins: Extra plugin objects (modules, classes or instances with hookimpls), loaded
            after the entry points, e.g. in tests.
        entry_points: Whether to load the ``aclbus`` entry points.

    Raises:
        PluginError: A plugin fails to import, or implements a hook that does not exist, or
            the allow-list names a plugin that is not installed.
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
        self._origins: dict[str, str] = {}
        eps = sorted(metadata.entry_points(group=PROJECT), key=lambda ep: ep.name)
        self.installed: tuple[str, ...] = tuple(
            sorted({name for name, _ in DEFAULT_PLUGINS} | {ep.name for ep in eps})
        )
        """Names of every installed plugin: the default ones and the entry points."""
        self.skipped: set[str] = set()
        """Installed plugins not loaded (``ACLBUS_PLUGINS`` / ``ACLBUS_DISABLE_PLUGINS``)."""
        denied = set(settings.disable_plugins)
        allowed = None if settings.plugins is None else set(settings.plugins)
        if allowed is not None:
            self._check_allowed(allowed)
        backend = settings.backend
        for name, module in DEFAULT_PLUGINS:
            if name in denied and name != backend:
                self.skipped.add(name)
                continue
            self._register(importlib.import_module(module), name, ("aclbus", _version()))
            self._origins[name] = f"default plugin {module}"
        if entry_points:
            chosen = [
                ep
                for ep in eps
                if ep.name == backend
                or (ep.name not in denied and (allowed is None or ep.name in allowed))
            ]
            for ep in chosen:
                self._load(ep)
            left_out = [ep for ep in eps if ep not in chosen]
            self.skipped.update(ep.name for ep in left_out)
            for ep in left_out:
                log.debug("plugin %s not loaded (ACLBUS_PLUGINS / ACLBUS_DISABLE_PLUGINS)", ep.name)
            if left_out and backend not in self.backends():
                self._load_backend_plugin(backend, left_out)
        for i, plugin in enumerate(plugins):
            name = _name_of(plugin, i)
            self._register(plugin, name, (None, None))
            self._origins[name] = "passed to Bus(plugins=...)"
        self._check_pending()

    def _check_allowed(self, allowed: set[str]) -> None:
        unknown = sorted(allowed - set(self.installed))
        if unknown:
            hints = "".join(
                f" (did you mean {match[0]!r} for {name!r}?)"
                for name in unknown
                if (match := difflib.get_close_matches(name, self.installed, n=1))
            )
            raise PluginError(
                f"ACLBUS_PLUGINS names {', '.join(map(repr, unknown))}, which "
                f"{'is' if len(unknown) == 1 else 'are'} not installed. Installed plugins: "
                f"{', '.join(self.installed)}{hints}"
            )

    def _load(self, ep: metadata.EntryPoint) -> None:
        if self.pm.has_plugin(ep.name):
            return
        dist = (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"plugin {ep.name!r} ({ep.value}, from {dist[0] or 'unknown distribution'}) "
                f"failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        self._register(plugin, ep.name, dist)
        self._origins[ep.name] = (
            f"entry point {ep.name} = {ep.value}, from distribution "
            f"{dist[0] or 'unknown'}{' ' + dist[1] if dist[1] else ''}"
        )

    def _load_backend_plugin(self, backend: str, candidates: list[metadata.EntryPoint]) -> None:
        """Load the left-out plugin that registers ``backend`` under another entry point name.

        Each candidate is tried, and kept only if it registers that backend.
        """
        for ep in candidates:
            self._load(ep)
            if backend in self.backends():
                self.skipped.discard(ep.name)
                return
            self.pm.unregister(name=ep.name)
            del self._dists[ep.name], self._origins[ep.name]

    def _check_pending(self) -> None:
        """Fail on a hookimpl that matches no hookspec: a misspelled hook is an error."""
        for hook_name, caller in vars(self.pm.hook).items():
            if hook_name.startswith("_") or caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook:
                    continue
                origin = self._origins.get(impl.plugin_name, "")
                hooks = [name for name in spec.__all__ if name.startswith("aclbus_")]
                match = difflib.get_close_matches(hook_name, hooks, n=1)
                raise PluginError(
                    f"plugin {impl.plugin_name!r} ({origin or 'no entry point'}) implements "
                    f"{hook_name!r}, which is no aclbus hook"
                    + (f": did you mean {match[0]!r}?" if match else ": is its name misspelled?")
                )

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
        """The middleware factories of all plugins, outermost first.

        The order: ``tryfirst`` hookimpls, then plain ones, then ``trylast`` ones; within each
        of the three, the plugin registered later comes first (registration order: the
        default plugins, the entry points by name, then ``Bus(plugins=...)``). pluggy itself
        orders its ``trylast`` group the other way round, earliest first; one rule for all
        three is easier to reason about, so the hookimpls are called here in this order.
        """
        rank = {name: i for i, name in enumerate(self._dists)}  # registration order

        def key(impl: Any) -> tuple[int, int]:
            group = 0 if impl.tryfirst else 2 if impl.trylast else 1
            return group, -rank.get(impl.plugin_name, len(rank))

        out: list[MiddlewareFactory] = []
        for impl in sorted(self.pm.hook.aclbus_middlewares.get_hookimpls(), key=key):
            result = impl.function(settings=settings)
            out.extend(cast("Sequence[MiddlewareFactory] | None", result) or ())
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

    def connection_options(self, settings: Settings) -> ConnectionOptions:
        """The plugins' TLS and credentials joined into one `ConnectionOptions`.

        Raises:
            PluginError: A plugin returned something else than `ConnectionOptions` or None, or
                two plugins gave the same part (TLS, or credentials), naming both.
        """
        parts: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for impl in self.pm.hook.aclbus_connection_options.get_hookimpls():
            given = impl.function(settings=settings)
            if given is None:
                continue
            if not isinstance(given, ConnectionOptions):
                raise PluginError(
                    f"plugin {impl.plugin_name!r} returned {type(given).__name__} from "
                    "aclbus_connection_options, not a ConnectionOptions (or None)"
                )
            for part in ("tls", "credentials"):
                value = getattr(given, part)
                if value is None:
                    continue
                if part in sources:
                    raise PluginError(
                        f"plugins {sources[part]!r} and {impl.plugin_name!r} both give the "
                        f"connection's {part}: configure one of them, or disable the other "
                        "(ACLBUS_DISABLE_PLUGINS)"
                    )
                parts[part] = value
                sources[part] = impl.plugin_name
        return ConnectionOptions(**parts, sources=sources)

    def commands(self) -> list[Any]:
        """The ``click`` commands the plugins register (`aclbus_register_commands`).

        Raises:
            PluginError: Two plugins register one name, or a plugin registers what is not a
                command.
        """
        found: dict[str, tuple[str, Any]] = {}

        def collect(owner: str) -> Callable[[Any], None]:
            def register(command: Any) -> None:
                name = getattr(command, "name", None)
                if not isinstance(name, str) or not name or not callable(command):
                    raise PluginError(
                        f"plugin {owner!r} registered {command!r}, which is not a click command"
                    )
                if name in found and found[name][1] is not command:
                    raise PluginError(
                        f"command {name!r} is registered by both {found[name][0]!r} and {owner!r}"
                    )
                found[name] = (owner, command)

            return register

        self._call_each("aclbus_register_commands", collect)
        return [command for _, command in found.values()]

    def connection_permissions(self, settings: Settings) -> Permissions | None:
        """What the plugins say the bus' connection may do (`aclbus_connection_permissions`).

        Raises:
            PluginError: A plugin returned something else than `Permissions`, or two did.
        """
        chosen: tuple[str, Permissions] | None = None
        for impl in self.pm.hook.aclbus_connection_permissions.get_hookimpls():
            result = impl.function(settings=settings)
            if result is None:
                continue
            if not isinstance(result, Permissions):
                raise PluginError(
                    f"plugin {impl.plugin_name!r} returned {result!r} from "
                    "aclbus_connection_permissions, not a Permissions"
                )
            if chosen is not None:
                raise PluginError(
                    f"plugins {chosen[0]!r} and {impl.plugin_name!r} both restrict the "
                    "connection (aclbus_connection_permissions): disable one of them"
                )
            chosen = (impl.plugin_name, result)
        return None if chosen is None else chosen[1]

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
