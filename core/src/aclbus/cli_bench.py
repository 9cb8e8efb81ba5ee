"""``aclbus bench``: aclbus beside raw nats-py and FastStream, and its failover and scale runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from aclbus.errors import ACLBusError

__all__ = ["bench"]


@click.command()
@click.argument("scenarios", nargs=-1, metavar="[SCENARIO]...")
@click.option(
    "--messages",
    default=10_000,
    show_default=True,
    type=click.IntRange(1, 10_000_000),
    help="Messages (or requests) per counted run (scale: sends per step, default 2000).",
)
@click.option(
    "--size",
    default=128,
    show_default=True,
    type=click.IntRange(20, 1_000_000),
    help="Payload bytes per message.",
)
@click.option(
    "--rate",
    "rates",
    multiple=True,
    type=click.FloatRange(1, 1_000_000),
    help="msg/s of latency-at-rate; repeat for several  [default: 5000, 20000]",
)
@click.option(
    "--duration",
    default=2.0,
    show_default=True,
    type=click.FloatRange(0.1, 600),
    help="Seconds each paced run publishes for.",
)
@click.option(
    "--repeats",
    default=5,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Runs per figure and column (the median is reported).",
)
@click.option(
    "--in-flight",
    default=64,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Publishes or requests awaiting their answer at once.",
)
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(1, 3600),
    help="Seconds one run may take (scale: each part of a step, default 600).",
)
@click.option("--no-memory", is_flag=True, help="Leave out the memory backend's column.")
@click.option(
    "--columns",
    "column_names",
    help="Comma-separated columns to run (default: all): raw, raw-headers, faststream, "
    "aclbus, memory.",
)
@click.option(
    "--kills",
    default=3,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="failover: stream-leader SIGKILLs.",
)
@click.option(
    "--agents",
    default="10,100,1000",
    show_default=True,
    help="scale: agents of each step, comma-separated.",
)
@click.option(
    "--processes",
    default="1",
    show_default=True,
    help="scale: worker processes each step's agents are spread over, comma-separated.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write JSON."
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a PNG of the latency CDFs (needs aclbus[bench]).",
)
@click.pass_context
def bench(
    ctx: click.Context,
    scenarios: tuple[str, ...],
    messages: int,
    size: int,
    rates: tuple[float, ...],
    duration: float,
    repeats: int,
    in_flight: int,
    timeout: float,
    no_memory: bool,
    column_names: str | None,
    kills: int,
    agents: str,
    processes: str,
    json_path: Path | None,
    plot_path: Path | None,
) -> None:
    """Measure aclbus side by side with raw nats-py and FastStream, on the same server.

    SCENARIO: core-throughput, durable-throughput, request-reply, latency-at-rate (default:
    all); failover on its own (a local 3-node cluster whose stream leader is killed
    --kills times); or scale on its own (--agents agents, each with an inbox, a group and a
    heartbeat, in each of --processes worker processes; --messages sends to their inboxes).
    With no server configured, the embedded one is started for the run.
    """
    if "failover" in scenarios:
        _bench_failover(ctx, scenarios, kills, json_path)
        return
    if "scale" in scenarios:
        if len(scenarios) > 1:
            raise click.UsageError("scale runs on its own: it starts agents by the thousand")
        given = {
            name: value
            for name, value in (("messages", messages), ("timeout", timeout))
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        }
        _bench_scale(agents, processes, in_flight, given, json_path)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from aclbus.bench import (
        COLUMNS,
        BenchOptions,
        check_plotting,
        render_table,
        run_bench,
        write_json,
        write_plot,
    )

    options = BenchOptions(
        scenarios=scenarios,
        messages=messages,
        size=size,
        rates=rates or (5_000.0, 20_000.0),
        duration=duration,
        repeats=repeats,
        in_flight=in_flight,
        timeout=timeout,
        memory=not no_memory,
        columns=_names(column_names) if column_names is not None else COLUMNS,
    )
    err = Console(stderr=True)
    try:
        options = options.checked()
        if plot_path is not None:
            check_plotting()
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err
        ) as bar:
            task = bar.add_task("starting", total=None)

            def progress(done: int, total: int, label: str) -> None:
                bar.update(task, completed=done, total=total, description=label)

            figures, environment = asyncio.run(run_bench(options, progress=progress))
        # The table has a column per contestant: give it room even in a narrow terminal.
        out = Console()
        render_table(figures, environment, Console(width=max(out.width, 140)))
        if json_path is not None:
            write_json(json_path, figures, environment)
            err.print(f"wrote {json_path}")
        if plot_path is not None:
            write_plot(figures, plot_path)
            err.print(f"wrote {plot_path}")
    except ACLBusError as exc:
        raise click.ClickException(str(exc)) from None


def _names(text: str) -> tuple[str, ...]:
    """The names of a comma-separated option (``--columns raw,aclbus``)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _bench_failover(
    ctx: click.Context, scenarios: tuple[str, ...], kills: int, json_path: Path | None
) -> None:
    if len(scenarios) > 1:
        raise click.UsageError("failover runs on its own: it starts a cluster and kills nodes")
    # The core starts no cluster: an adapter that can registers `cluster failover` (NATS).
    root = ctx.find_root()
    group = (
        root.command.get_command(root, "cluster") if isinstance(root.command, click.Group) else None
    )
    command = group.get_command(ctx, "failover") if isinstance(group, click.Group) else None
    if command is None:
        raise click.ClickException(
            "failover needs an adapter that starts a local cluster (`aclbus cluster "
            'failover`); install one: pip install "aclbus[nats]"'
        )
    ctx.invoke(command, kills=kills, json_path=json_path)


def _counts(option: str, text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of counts") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"{text!r}: give counts of at least 1", param_hint=option)
    return counts


def _bench_scale(
    agents: str,
    processes: str,
    in_flight: int,
    given: dict[str, Any],
    json_path: Path | None,
) -> None:
    from aclbus.bench.scale import ScaleOptions, render_scale, run_scale

    # Only what was given: scale has defaults of its own (its parts take seconds by the
    # thousand agents, and the bench's 10,000 messages would dwarf the start).
    options = ScaleOptions(
        agents=_counts("--agents", agents),
        processes=_counts("--processes", processes),
        window=in_flight,
        **given,
    )
    err = Console(stderr=True)
    try:
        steps, environment = asyncio.run(
            run_scale(options, progress=lambda what: err.print(f"scale: {what}"))
        )
    except ACLBusError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render_scale(steps))
    if json_path is not None:
        report = {"environment": environment, "steps": [s.figures() for s in steps]}
        json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        err.print(f"wrote {json_path}")
    failed = [s for s in steps if s.error is not None]
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(steps)} steps failed (see the table)")
