"""``aclbus policy``: check a policy, render it for nats-server, print a user's JWT claims.

Registered on the ``aclbus`` command line by the auth plugin (`aclbus_register_commands`).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from aclbus_auth.policy.loading import PolicyError, load_policy
from aclbus_auth.policy.rendering import jwt_permissions, render_json, render_nats_conf

__all__ = ["policy"]

_POLICY = click.Path(exists=False, dir_okay=False, path_type=Path)


@click.group()
def policy() -> None:
    """Policies: who may do what, rendered into the server's permissions."""


@policy.command()
@click.argument("policy_file", metavar="POLICY", type=_POLICY)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["nats-conf", "json"]),
    default="nats-conf",
    show_default=True,
    help="nats-server's configuration syntax, or JSON.",
)
def render(policy_file: Path, fmt: str) -> None:
    """Print the authorization {} block of nats-server for POLICY.

    Include it in the server's configuration (`include "authorization.conf"`) and reload
    the server (`nats-server --signal reload`). Passwords stay $VARIABLE references, which
    the server resolves from its environment.
    """
    try:
        loaded = load_policy(policy_file)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render_nats_conf(loaded) if fmt == "nats-conf" else render_json(loaded), nl=False)
    if fmt == "json":
        click.echo()


@policy.command()
@click.argument("policy_file", metavar="POLICY", type=_POLICY)
def check(policy_file: Path) -> None:
    """Check POLICY; print each user and the agents it may act as."""
    try:
        loaded = load_policy(policy_file)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    for name, user in loaded.users.items():
        acts = "admin" if user.admin else ", ".join(user.agents)
        click.echo(f"{name} ({user.method}): {acts}")


@policy.command()
@click.argument("policy_file", metavar="POLICY", type=_POLICY)
@click.argument("user")
def claims(policy_file: Path, user: str) -> None:
    """Print USER's permissions as the claims of a user JWT (operator mode), as JSON."""
    try:
        loaded = load_policy(policy_file)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    if user not in loaded.users:
        raise click.ClickException(
            f"policy {policy_file}: no user {user!r} (users: {', '.join(loaded.users)})"
        )
    click.echo(json.dumps(jwt_permissions(loaded, user), indent=2))
