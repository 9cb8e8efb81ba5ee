"""The ``aclbus`` command line: demo, plugins, doctor."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys

import click
from rich.console import Console
from rich.table import Table

from aclbus.bus import Bus
from aclbus.errors import ACLBusError
from aclbus.settings import Settings, user_data_dir

__all__ = ["main"]


@click.group()
@click.version_option(package_name="aclbus")
def main() -> None:
    """aclbus: Agent Communication Language messaging for distributed AI agents."""


@main.command()
@click.option(
    "--agents", default=3, show_default=True, type=click.IntRange(1, 100), help="Worker agents."
)
@click.option(
    "--messages",
    default=20,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Requests and work items per worker.",
)
@click.option(
    "--duration",
    default=60.0,
    show_default=True,
    type=click.FloatRange(1, 3600),
    help="Upper bound on the run, seconds.",
)
def demo(agents: int, messages: int, duration: float) -> None:
    """Run a coordinator and workers through broadcast, request-reply, p2p work and a retry."""
    from aclbus.demo import run_demo

    settings = Settings()
    if settings.data_dir is None:
        # The demo keeps the embedded server's store between runs, like a real deployment.
        settings = settings.model_copy(update={"data_dir": user_data_dir()})
    try:
        result = asyncio.run(
            run_demo(settings, agents=agents, messages=messages, duration=duration)
        )
    except ACLBusError as exc:
        raise click.ClickException(str(exc)) from None
    if not result.ok:
        raise click.ClickException("the demo did not deliver every message (see the table)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json: bool) -> None:
    """List the loaded plugins with their distribution, version and hooks."""
    from aclbus.plugin.manager import PluginManager

    try:
        infos = PluginManager(Settings()).info()
    except ACLBusError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(i) for i in infos], indent=2))
        return
    table = Table(title="aclbus plugins")
    for column in ("name", "module", "distribution", "version", "hooks"):
        table.add_column(column)
    for i in infos:
        table.add_row(i.name, i.module, i.distribution or "-", i.version or "-", ", ".join(i.hooks))
    Console().print(table)


@main.command()
def doctor() -> None:
    """Show the resolved settings (secrets masked), plugins, backend capabilities and server."""

    async def run() -> dict[str, object]:
        async with Bus() as bus:
            return await bus.describe()

    try:
        facts = asyncio.run(run())
    except ACLBusError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(facts, indent=2, default=str))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
