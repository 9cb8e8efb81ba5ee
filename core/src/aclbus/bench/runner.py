"""Running the benchmark: columns opened once, each figure's runs interleaved across them."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aclbus.backend import DeliveryMode
from aclbus.bench.bus_column import BusColumn
from aclbus.bench.errors import BenchError, BenchTimeout
from aclbus.bench.figures import COLUMNS, Figure, plan, resolve
from aclbus.bus import Bus
from aclbus.plugin.bench_columns import STAMP_MIN_SIZE, Column, Params, Sample
from aclbus.plugin.manager import PluginManager
from aclbus.settings import Settings

__all__ = ["BenchOptions", "Progress", "bench_plugins", "bench_settings", "run_bench"]

Progress = Callable[[int, int, str], None]
"""``progress(done, total, label)``: called before each run and once at the end."""

_TRANSPORT_HOOKS = frozenset(
    {"aclbus_register_backends", "aclbus_register_benchmarks", "aclbus_register_codecs"}
)
"""Hooks of plugins the bench loads by default: they add no per-message work."""

_GRACE = 30.0
"""Seconds a run may take beyond its step's timeout (set-up, draining) before it is stopped."""


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What ``aclbus bench`` runs.

    Attributes:
        scenarios: Scenario names (see `SCENARIOS`); empty: all.
        messages: Messages per counted run.
        size: Payload bytes per message.
        rates: Rates (msg/s) of ``latency-at-rate``, one figure each.
        duration: Seconds each paced run publishes for.
        repeats: Runs per figure and column; the median is reported.
        in_flight: Publishes or requests awaiting their answer at once.
        latency_messages: Requests in the sequential request-latency run; None: ``messages``
            up to 2,000.
        timeout: Seconds one run may take.
        memory: Whether to add the memory backend's column (when the bus is not on memory).
    """

    scenarios: Sequence[str] = ()
    messages: int = 10_000
    size: int = 128
    rates: Sequence[float] = (5_000.0, 20_000.0)
    duration: float = 2.0
    repeats: int = 5
    in_flight: int = 64
    latency_messages: int | None = None
    timeout: float = 60.0
    memory: bool = True
    columns: Sequence[str] = field(default=COLUMNS)

    def checked(self) -> BenchOptions:
        """These options with the scenarios resolved.

        Raises:
            UnknownScenario: A scenario name that does not exist.
            BenchError: A count, size, rate or time that cannot work, naming it.
        """
        scenarios = resolve(self.scenarios)
        for name, value, low in (
            ("messages", self.messages, 1),
            ("repeats", self.repeats, 1),
            ("in_flight", self.in_flight, 1),
            ("size", self.size, STAMP_MIN_SIZE),
        ):
            if value < low:
                raise BenchError(f"{name} must be at least {low}, got {value!r}")
        for name, number in (("duration", self.duration), ("timeout", self.timeout)):
            if not number > 0:
                raise BenchError(f"{name} must be positive, got {number!r}")
        if not self.rates or any(not r > 0 for r in self.rates):
            raise BenchError(f"rates must be positive, got {list(self.rates)!r}")
        unknown = [c for c in self.columns if c not in COLUMNS]
        if unknown:
            raise BenchError(f"unknown column(s) {unknown}; columns: {', '.join(COLUMNS)}")
        return BenchOptions(
            scenarios=scenarios,
            messages=self.messages,
            size=self.size,
            rates=tuple(self.rates),
            duration=self.duration,
            repeats=self.repeats,
            in_flight=self.in_flight,
            latency_messages=self.latency_messages,
            timeout=self.timeout,
            memory=self.memory,
            columns=tuple(self.columns),
        )


def bench_plugins(settings: Settings) -> list[str]:
    """The plugins a benchmark loads: ``settings.plugins`` if set, else the transport ones.

    aclbus itself is measured, not the middleware of whatever plugins are installed (dedup
    alone adds two KV writes per message): only plugins that provide transports, codecs or
    columns are loaded, unless ``ACLBUS_PLUGINS`` names the ones to measure with.
    """
    if settings.plugins is not None:
        return list(settings.plugins)
    return [i.name for i in PluginManager(settings).info() if set(i.hooks) <= _TRANSPORT_HOOKS]


def bench_settings(settings: Settings | None) -> Settings:
    """The bench's settings: the user's, under a prefix of its own, broadcasts at most once."""
    base = settings if settings is not None else Settings()
    return base.model_copy(
        update={
            "plugins": bench_plugins(base),
            "subject_prefix": f"bench{secrets.token_hex(3)}",
            "broadcast_mode": DeliveryMode.AT_MOST_ONCE,
        }
    )


async def run_bench(
    options: BenchOptions,
    *,
    settings: Settings | None = None,
    plugins: Sequence[object] = (),
    progress: Progress | None = None,
) -> tuple[list[Figure], dict[str, str]]:
    """Run the benchmark and return its figures and the environment it ran in.

    The bus is made from ``settings`` (by default the environment's: the embedded NATS
    server when none is configured). Plugins add columns through
    ``aclbus_register_benchmarks``; each figure runs every column ``repeats`` times,
    interleaved (the column that starts rotates), against the same server.

    Args:
        options: What to run.
        settings: The bus' settings; None: from the environment.
        plugins: Extra plugin objects for the bus.
        progress: Told about each run.

    Raises:
        UnknownScenario: A scenario that does not exist.
        BenchError: Bad options, or a run that failed or timed out.
    """
    options = options.checked()
    params = Params(
        messages=options.messages,
        size=options.size,
        in_flight=options.in_flight,
        duration=options.duration,
        timeout=options.timeout,
    )
    latency_messages = options.latency_messages or min(options.messages, 2_000)
    figures = plan(
        options.scenarios, params, rates=options.rates, latency_messages=latency_messages
    )
    async with contextlib.AsyncExitStack() as stack:
        bus = Bus(bench_settings(settings), plugins=plugins)
        await stack.enter_async_context(bus)
        columns = await _columns(bus, options, stack)
        for column in columns:
            await column.open()
            stack.push_async_callback(column.close)
        total = len(figures) * options.repeats * len(columns)
        done = 0
        for figure in figures:
            for rep in range(options.repeats):
                turn = rep % len(columns)
                for column in [*columns[turn:], *columns[:turn]]:
                    if progress is not None:
                        progress(done, total, f"{figure.scenario}: {figure.metric} · {column.name}")
                    figure.record(column.name, await _run(column, figure))
                    done += 1
        if progress is not None:
            progress(total, total, "done")
        environment = await _environment(bus)
    return figures, environment


async def _columns(
    bus: Bus, options: BenchOptions, stack: contextlib.AsyncExitStack
) -> list[Column]:
    made: dict[str, Column] = {}
    for name, factory in bus.plugins.benchmark_columns().items():
        column = factory(bus)
        if column is not None:
            made[name] = column
    on_memory = bus.backend.name == "memory"
    # On memory, the bus itself gives the memory figure; elsewhere a second bus does.
    made["memory" if on_memory else "aclbus"] = BusColumn("memory" if on_memory else "aclbus", bus)
    if options.memory and not on_memory:
        memory_bus = Bus(
            bus.settings.model_copy(update={"backend": "memory"}), plugins=bus.extra_plugins
        )
        await stack.enter_async_context(memory_bus)
        made["memory"] = BusColumn("memory", memory_bus)
    order = {name: i for i, name in enumerate(COLUMNS)}
    chosen = [c for c in made.values() if c.name in options.columns]
    return sorted(chosen, key=lambda c: order.get(c.name, len(order)))


async def _run(column: Column, figure: Figure) -> Sample:
    params = figure.params
    try:
        return await asyncio.wait_for(column.run(figure.step, params), params.timeout + _GRACE)
    except TimeoutError:
        raise BenchTimeout(column.name, figure.step, params.timeout + _GRACE) from None
    except BenchError:
        raise
    except Exception as exc:
        raise BenchError(
            f"column {column.name!r} failed in {figure.scenario} ({figure.metric}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


async def _environment(bus: Bus) -> dict[str, str]:
    import os
    import platform
    from importlib import metadata

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": str(os.cpu_count() or "?"),
        "backend": bus.backend.name,
        "plugins": ",".join(sorted(bus.settings.plugins or ())) or "none",
    }
    for dist in ("aclbus", "aclbus-nats", "nats-py", "faststream"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            env[dist] = metadata.version(dist)
    with contextlib.suppress(Exception):
        server = (await bus.backend.describe()).get("server_version")
        if server:
            env["server"] = str(server)
    return env
