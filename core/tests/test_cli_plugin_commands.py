"""Plugin commands on the ``aclbus`` command line (`aclbus_register_commands`)."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner

from aclbus.cli import main
from aclbus.errors import PluginError
from aclbus.plugin import hookimpl
from aclbus.plugin.manager import PluginManager
from aclbus.settings import Settings


@click.command()
def hello() -> None:
    """Say hello."""
    click.echo("hello from a plugin")


@click.command(name="plugins")
def clash() -> None:
    """A plugin's command named like a core one."""
    click.echo("the plugin's")


class Commands:
    def __init__(self, *commands: click.Command) -> None:
        self.commands = commands

    @hookimpl
    def aclbus_register_commands(self, register: Any) -> None:
        for command in self.commands:
            register(command)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's plugin manager holds a plugin registering ``hello`` and ``plugins``."""
    original = PluginManager.__init__

    def with_commands(self: PluginManager, settings: Settings, *args: Any, **kw: Any) -> None:
        original(self, settings, [Commands(hello, clash)], entry_points=False)

    monkeypatch.setattr(PluginManager, "__init__", with_commands)
    monkeypatch.setattr(main, "_from_plugins", None)  # forget the commands loaded before


@pytest.mark.usefixtures("registered")
def test_a_plugins_command_runs_and_is_listed() -> None:
    done = CliRunner().invoke(main, ["hello"])
    assert done.exit_code == 0
    assert done.output.endswith("hello from a plugin\n")
    listing = CliRunner().invoke(main, ["--help"]).output
    assert "hello" in listing


@pytest.mark.usefixtures("registered")
def test_a_plugin_cannot_replace_a_core_command() -> None:
    done = CliRunner().invoke(main, ["plugins", "--json"])
    assert "the plugin's" not in done.output
    assert "a plugin's command 'plugins' is left out" in CliRunner().invoke(main, ["--help"]).output


def test_two_plugins_registering_one_name_is_an_error_naming_both() -> None:
    other = click.Command(name="hello")
    pm = PluginManager(Settings(), [Commands(hello), Commands(other)], entry_points=False)
    with pytest.raises(PluginError, match="command 'hello' is registered by both"):
        pm.commands()
