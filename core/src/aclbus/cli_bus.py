"""The bus a command of ``aclbus`` runs on, and the exit codes its outcomes map to.

Every command that talks to the broker runs its work with `run_on_bus`: the bus comes from
the `CommandContext` of the click context (a `aclbus.Bus` made from the environment unless a
caller, a test, gives another factory), and an aclbus error becomes an exit code and a line
on stderr instead of a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

import click

from aclbus.bus import Bus
from aclbus.errors import ACLBusError, NoResponders, RequestTimeout
from aclbus.redaction import redact
from aclbus.settings import Settings, user_data_dir

__all__ = [
    "CommandContext",
    "CommandFailed",
    "ExitCode",
    "NoResponder",
    "TimedOut",
    "command_bus",
    "run_on_bus",
]

T = TypeVar("T")


class ExitCode(IntEnum):
    """The exit codes of ``aclbus`` commands, the same for every command."""

    OK = 0
    """Done; for ``request``: a reply that is not a refusal."""
    ERROR = 1
    """An aclbus error: the broker cannot be reached, a refused publish, a bad setting."""
    USAGE = 2
    """Bad command line: an unknown option, an invalid id, content that is not JSON."""
    TIMEOUT = 3
    """No reply (``request``) or not ``--count`` messages (``listen``) in time."""
    NO_RESPONDER = 4
    """``request``: no agent serves the receiver."""
    REFUSED = 5
    """``request``: the reply is ``refuse``, ``failure`` or ``not-understood``."""


class CommandFailed(click.ClickException):
    """A command's failure: ``Error: <message>`` on stderr, exit 1 (`ExitCode.ERROR`).

    Args:
        message: What went wrong (secrets are masked before it is shown).
    """

    exit_code = int(ExitCode.ERROR)

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class TimedOut(CommandFailed):
    """Nothing (or not enough) came in time: exit 3 (`ExitCode.TIMEOUT`)."""

    exit_code = int(ExitCode.TIMEOUT)


class NoResponder(CommandFailed):
    """No agent serves the request's receiver: exit 4 (`ExitCode.NO_RESPONDER`)."""

    exit_code = int(ExitCode.NO_RESPONDER)


def command_bus() -> Bus:
    """The bus of a command: from the environment, with a lasting data dir by default.

    ``ACLBUS_DATA_DIR`` unset means `user_data_dir`, as for ``aclbus demo``: an embedded
    nats-server (no server configured) keeps its store there, and the commands of other
    processes with the same data dir connect to the server one of them runs instead of
    starting one each, so that ``aclbus listen`` hears what ``aclbus send`` sends.
    """
    settings = Settings()
    if settings.data_dir is None:
        settings = settings.model_copy(update={"data_dir": user_data_dir()})
    return Bus(settings)


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What the commands share: the factory of the bus they run on.

    ``main(obj=CommandContext(make_bus=...))`` (or click's ``CliRunner().invoke(main, args,
    obj=...)``) runs the commands on a bus of the caller's making: a memory bus whose agents
    answer the requests, in tests.

    Attributes:
        make_bus: Makes the (not started) bus of one command.
    """

    make_bus: Callable[[], Bus] = command_bus


def _factory() -> Callable[[], Bus]:
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(CommandContext) if ctx is not None else None
    return (found or CommandContext()).make_bus


def run_on_bus(work: Callable[[Bus], Awaitable[T]]) -> T:
    """Run ``work`` on a started bus, and turn aclbus errors into exits.

    Args:
        work: The command's work, given the started bus; it may raise `click.ClickException`
            (its own exit code) as well.

    Returns:
        What ``work`` returned.

    Raises:
        CommandFailed: An aclbus error: `RequestTimeout` exits 3, `NoResponders` 4, any other
            1, each with its message on stderr.
    """
    make_bus = _factory()

    async def run() -> T:
        async with make_bus() as bus:
            return await work(bus)

    try:
        return asyncio.run(run())
    except RequestTimeout as exc:
        raise TimedOut(str(exc)) from None
    except NoResponders as exc:
        raise NoResponder(str(exc)) from None
    except ACLBusError as exc:
        raise CommandFailed(str(exc)) from None
