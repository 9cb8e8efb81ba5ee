"""The ``aclbus`` command line: demo, plugins, doctor, dlq, bench, send, request, listen."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from aclbus.bus import Bus
from aclbus.cli_bench import bench
from aclbus.cli_bus import run_on_bus
from aclbus.cli_listen import listen
from aclbus.cli_messages import request, send
from aclbus.errors import ACLBusError
from aclbus.redaction import redact
from aclbus.settings import Settings, user_data_dir

__all__ = ["PluginCommands", "main"]

T = TypeVar("T")


class PluginCommands(click.Group):
    """The core's commands, and those the plugins register (`aclbus_register_commands`).

    The plugins are loaded only when a command is not the core's, or when every command is
    listed (``aclbus --help``), so the core's commands start as fast as without plugins. A
    plugin that fails to load costs its commands only: a warning on stderr says why, and
    ``--help`` and the core's commands keep working.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._from_plugins: dict[str, click.Command] | None = None

    def plugin_commands(self) -> dict[str, click.Command]:
        """The plugins' commands by name (loaded at the first call)."""
        if self._from_plugins is not None:
            return self._from_plugins
        self._from_plugins = {}
        try:
            from aclbus.plugin.manager import PluginManager

            registered = PluginManager(Settings()).commands()
        except Exception as exc:  # a broken plugin must not take the CLI down with it
            click.echo(
                f"warning: plugin commands are unavailable ({type(exc).__name__}: "
                f"{redact(str(exc))}); the core's commands work",
                err=True,
            )
            return self._from_plugins
        for command in registered:
            if command.name is None or command.name in self.commands:
                click.echo(
                    f"warning: a plugin's command {command.name!r} is left out: the core has "
                    "a command of that name",
                    err=True,
                )
                continue
            self._from_plugins[command.name] = command
        return self._from_plugins

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The core's commands and the plugins', sorted."""
        return sorted({*super().list_commands(ctx), *self.plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A core command without loading the plugins; else a plugin's."""
        return super().get_command(ctx, cmd_name) or self.plugin_commands().get(cmd_name)


@click.group(cls=PluginCommands)
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
@click.option(
    "--cluster",
    is_flag=True,
    help="On a fresh local 3-node cluster, killing a node midway (`aclbus cluster demo`).",
)
@click.pass_context
def demo(ctx: click.Context, agents: int, messages: int, duration: float, cluster: bool) -> None:
    """Run a coordinator and workers through broadcast, request-reply, p2p work and a retry."""
    from aclbus.demo import run_demo

    if cluster:
        # The core knows no cluster: an adapter that can start one registers `cluster demo`
        # (the NATS adapter does), found by name like any plugin command.
        group = main.get_command(ctx, "cluster")
        command = group.get_command(ctx, "demo") if isinstance(group, click.Group) else None
        if command is None:
            raise click.ClickException(
                "--cluster needs an adapter that starts a local cluster (`aclbus cluster "
                'demo`); install one: pip install "aclbus[nats]"'
            )
        given = {"agents": agents, "messages": messages, "duration": duration}
        # Only what was given: the adapter's command has defaults of its own for a cluster.
        ctx.invoke(
            command,
            **{
                name: value
                for name, value in given.items()
                if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
            },
        )
        return

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


def _with_bus(work: Callable[[Bus], Awaitable[T]]) -> T:
    """Run a ``dlq`` command's ``work`` on the commands' bus (`aclbus.cli_bus.run_on_bus`).

    The same bus and exit codes as ``send``, ``request`` and ``listen``: with an embedded
    server, the lasting data dir, so ``aclbus dlq ls`` sees what ``aclbus demo`` left.
    """
    try:
        return run_on_bus(work)
    except NotImplementedError as exc:
        raise click.ClickException(f"this backend keeps no dead letters ({exc})") from None


@main.group()
def dlq() -> None:
    """The dead-letter queue: messages that will not be handled, and why."""


@dlq.command("ls")
@click.option("--agent", help="Only the dead letters of this agent.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dlq_ls(agent: str | None, limit: int, as_json: bool) -> None:
    """List dead letters, oldest first."""
    letters = _with_bus(lambda bus: bus.dead_letters.list(origin=agent, limit=limit))
    if as_json:
        click.echo(json.dumps([letter.as_dict() for letter in letters], indent=2))
        return
    if not letters:
        click.echo("the dead-letter queue is empty")
        return
    table = Table(title=f"dead letters ({len(letters)})")
    for column in ("id", "agent", "reason", "attempts", "error", "message id", "dead at"):
        table.add_column(column)
    for d in letters:
        error = f"{d.error_type}: {d.error}" if d.error_type else "-"
        table.add_row(
            str(d.sequence),
            d.origin,
            d.reason,
            str(d.attempts),
            error[:60],
            d.message_id or "-",
            d.dead_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    Console().print(table)


@dlq.command("show")
@click.argument("sequence", type=click.IntRange(1))
def dlq_show(sequence: int) -> None:
    """Show one dead letter: why it died, its headers and body."""

    async def show(bus: Bus) -> dict[str, object]:
        try:
            return (await bus.dead_letters.get(sequence)).as_dict()
        except KeyError as exc:
            raise click.ClickException(str(exc.args[0])) from None

    click.echo(json.dumps(_with_bus(show), indent=2))


@dlq.command("replay")
@click.argument("sequence", required=False, type=click.IntRange(1))
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@click.option("--agent", help="With --all: only this agent's dead letters.")
@click.option("--to", "to", help="Send to this agent's inbox instead of the original subject.")
@click.option("--keep", is_flag=True, help="Keep the dead letters after replaying them.")
def dlq_replay(
    sequence: int | None, replay_all: bool, agent: str | None, to: str | None, keep: bool
) -> None:
    """Publish dead letters again, with a new attempt budget and a link to the dead letter."""
    if (sequence is None) == (not replay_all):
        raise click.UsageError("give one dead-letter id, or --all")

    async def replay(bus: Bus) -> list[int]:
        if sequence is not None:
            ids = [sequence]
        else:
            ids = [d.sequence for d in await bus.dead_letters.list(origin=agent, limit=10_000)]
        for seq in ids:
            try:
                await bus.dead_letters.replay(seq, to=to, remove=not keep)
            except KeyError as exc:
                raise click.ClickException(str(exc.args[0])) from None
        return ids

    ids = _with_bus(replay)
    click.echo(f"replayed {len(ids)} dead letter(s)" + (f" to {to}" if to else ""))


@dlq.command("purge")
@click.argument("sequence", required=False, type=click.IntRange(1))
@click.option("--all", "purge_all", is_flag=True, help="Delete every dead letter.")
@click.option("--agent", help="With --all: only this agent's dead letters.")
def dlq_purge(sequence: int | None, purge_all: bool, agent: str | None) -> None:
    """Delete one dead letter, or all of them (of one agent)."""
    if (sequence is None) == (not purge_all):
        raise click.UsageError("give one dead-letter id, or --all")
    count = _with_bus(
        lambda bus: bus.dead_letters.purge(sequence, origin=agent if purge_all else None)
    )
    click.echo(f"deleted {count} dead letter(s)")


main.add_command(bench)
main.add_command(send)
main.add_command(request)
main.add_command(listen)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
