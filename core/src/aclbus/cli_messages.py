"""``aclbus send`` and ``aclbus request``: one message from the command line.

Both build an `ACLMessage` from the same options (`message_options`); ``send`` hands it to
an agent's inbox, a topic, a group or every agent, ``request`` waits for the reply and exits
by its outcome (`aclbus.cli_bus.ExitCode`). `envelope_json` and `message_line` are how a
message is shown, here and by ``aclbus listen``.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
import pydantic
from rich.console import Console
from rich.markup import escape

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import PublishAck
from aclbus.bus import Bus
from aclbus.cli_bus import ExitCode, run_on_bus
from aclbus.errors import InvalidIdentifier
from aclbus.subjects import validate_id, validate_topic

__all__ = [
    "REFUSALS",
    "envelope_json",
    "message_line",
    "message_options",
    "note_reach",
    "request",
    "send",
    "valid_id",
    "valid_topic",
]

F = TypeVar("F", bound=Callable[..., Any])

REFUSALS = frozenset({Performative.REFUSE, Performative.FAILURE, Performative.NOT_UNDERSTOOD})
"""The reply performatives that make ``aclbus request`` exit 5."""

_PERFORMATIVES = click.Choice([p.value for p in Performative], case_sensitive=False)
_CONTENT_SHOWN = 200  # characters of content in a human-readable line


def valid_id(kind: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback that checks an id (or each of several) and names what is wrong.

    Args:
        kind: What the id names, for the message (``"agent id"``, ``"group"``).
    """

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            if isinstance(value, tuple):
                return tuple(validate_id(v, kind) for v in value)
            return validate_id(value, kind)
        except InvalidIdentifier as exc:
            raise click.BadParameter(str(exc)) from None

    return check


def valid_topic(pattern: bool) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback that checks a dotted topic (``pattern``: wildcards allowed)."""

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return None
        try:
            if isinstance(value, tuple):
                return tuple(validate_topic(v, pattern=pattern) for v in value)
            return validate_topic(value, pattern=pattern)
        except InvalidIdentifier as exc:
            raise click.BadParameter(str(exc)) from None

    return check


def message_options(default_performative: str) -> Callable[[F], F]:
    """The options every message-making command takes (see ``aclbus send --help``)."""

    def decorate(func: F) -> F:
        options = [
            click.option(
                "--performative",
                "-p",
                default=default_performative,
                show_default=True,
                type=_PERFORMATIVES,
                metavar="ACT",
                help="The communicative act: a FIPA performative (inform, request, agree, …).",
            ),
            click.option(
                "--as",
                "sender",
                default="cli",
                show_default=True,
                metavar="AGENT",
                callback=valid_id("agent id"),
                help="The agent id to send as.",
            ),
            click.option(
                "--type", "message_type", metavar="TYPE", help="The message type (dotted)."
            ),
            click.option("--ontology", help="The ontology of the content."),
            click.option("--language", help="The language of the content."),
            click.option(
                "--header",
                "headers",
                multiple=True,
                metavar="NAME=VALUE",
                help="An application header; repeat for several.",
            ),
            click.option("--json-content", is_flag=True, help="CONTENT is JSON (else a string)."),
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _content(content: str | None, as_json: bool) -> Any:
    if content == "-":
        content = sys.stdin.read()
    if content is None or not as_json:
        return content
    try:
        return json.loads(content)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            param_hint="CONTENT (--json-content)",
        ) from None


def _headers(pairs: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--header")
        headers[name] = value
    return headers


def _build_message(fields: dict[str, Any]) -> ACLMessage:
    """The message the options describe, or a usage error naming the field that is wrong."""
    try:
        return ACLMessage(**{k: v for k, v in fields.items() if v is not None})
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}" for e in exc.errors()
        )
        raise click.UsageError(f"invalid message: {problems}") from None


def _fields(options: dict[str, Any], content: str | None) -> dict[str, Any]:
    return {
        "performative": options["performative"].lower(),
        "sender_id": options["sender"],
        "message_type": options["message_type"],
        "ontology": options["ontology"],
        "language": options["language"],
        "headers": _headers(options["headers"]),
        "payload": _content(content, options["json_content"]),
    }


def envelope_json(msg: ACLMessage) -> dict[str, Any]:
    """A message as JSON-ready data: every envelope field, the payload as it decoded.

    A payload of bytes that are not UTF-8 (a binary codec's) is shown as
    ``{"base64": "..."}``.
    """
    if isinstance(msg.payload, bytes):
        try:
            text: Any = msg.payload.decode()
        except UnicodeDecodeError:
            text = {"base64": base64.b64encode(msg.payload).decode()}
        return {**msg.model_dump(mode="json", exclude={"payload"}), "payload": text}
    return msg.model_dump(mode="json")


def message_line(msg: ACLMessage) -> str:
    """One message as one line of rich markup: time, act, sender → receiver, content."""
    to = ",".join(msg.all_receivers) or (f"topic {msg.topic}" if msg.topic else "*")
    kind = f" [dim]{escape(msg.message_type)}[/dim]" if msg.message_type else ""
    if msg.payload is None:
        content = "[dim](no content)[/dim]"
    else:
        text = (
            msg.payload
            if isinstance(msg.payload, str)
            else json.dumps(envelope_json(msg)["payload"])
        )
        if len(text) > _CONTENT_SHOWN:
            text = text[:_CONTENT_SHOWN] + "…"
        content = escape(text)
    return (
        f"[dim]{msg.timestamp:%H:%M:%S}[/dim] [bold]{escape(msg.performative.value)}[/bold] "
        f"{escape(msg.sender_id)} → {escape(to)}{kind}: {content}"
    )


async def note_reach(bus: Bus, err: Console) -> None:
    """Say on stderr who, outside this process, can hear what it sends or receives.

    The memory backend lives in the process: nobody. A NATS backend with no server configured
    that started the embedded nats-server: the commands with the same data dir (which use that
    server while it runs), and programs given its URL. Nothing is said otherwise.
    """
    if bus.backend.name == "memory":
        err.print(
            "note: the memory backend lives in this process only: other processes neither "
            "hear nor reach it (use ACLBUS_BACKEND=nats)",
            highlight=False,
        )
        return
    facts = await bus.backend.describe()
    if facts.get("embedded"):
        url = (facts.get("servers") or ["?"])[0]
        shared = (
            f"other aclbus commands with the data dir {bus.settings.data_dir} use it, and "
            if bus.settings.data_dir is not None
            else ""
        )
        err.print(
            f"note: no NATS server is configured: this process runs an embedded nats-server "
            f"at {url} until it exits; {shared}other programs reach it with "
            f"ACLBUS_NATS__SERVERS={url}",
            highlight=False,
        )


def _ack_json(ack: PublishAck, receiver: str | None = None) -> dict[str, Any]:
    where = {"receiver": receiver} if receiver is not None else {}
    return {**where, "stream": ack.stream, "sequence": ack.sequence, "duplicate": ack.duplicate}


def _ack_text(ack: PublishAck) -> str:
    if ack.stream is None:
        return "not stored"
    return f"stream {ack.stream} seq {ack.sequence}" + (" (duplicate)" if ack.duplicate else "")


@click.command()
@click.argument("args", nargs=-1, metavar="[RECEIVER] [CONTENT]")
@click.option(
    "--topic", metavar="TOPIC", callback=valid_topic(False), help="Publish on this topic instead."
)
@click.option(
    "--group", metavar="GROUP", callback=valid_id("group"), help="Send to the members of a group."
)
@click.option("--broadcast", is_flag=True, help="Send to every agent.")
@message_options("inform")
def send(
    args: tuple[str, ...], topic: str | None, group: str | None, broadcast: bool, **options: Any
) -> None:
    """Send one message to an agent's inbox (or a topic, a group, every agent).

    RECEIVER is an agent id, or several comma-separated (one copy each); leave it out with
    --topic, --group or --broadcast. CONTENT is a string, JSON with --json-content, or read
    from stdin with '-'. Prints the message id and where the broker stored it.
    """
    targets = sum((topic is not None, group is not None, broadcast))
    if targets > 1:
        raise click.UsageError("give one of --topic, --group and --broadcast")
    most = 1 if targets else 2
    if len(args) > most or (not targets and not args):
        raise click.UsageError(
            "give CONTENT only, with --topic, --group or --broadcast"
            if targets
            else "give RECEIVER (and CONTENT), or one of --topic, --group and --broadcast"
        )
    receivers: tuple[str, ...] = ()
    if not targets:
        try:
            receivers = tuple(validate_id(r) for r in args[0].split(","))
        except InvalidIdentifier as exc:
            raise click.BadParameter(str(exc), param_hint="RECEIVER") from None
    content = args[-1] if len(args) == most else None
    fields = _fields(options, content)
    if len(receivers) == 1:
        fields["receiver_id"] = receivers[0]
    elif receivers:
        fields["receivers"] = receivers
    msg = _build_message(fields)
    err = Console(stderr=True, highlight=False, soft_wrap=True)

    async def work(bus: Bus) -> tuple[str, list[dict[str, Any]], list[str]]:
        await note_reach(bus, err)
        if topic is not None:
            ack = await bus.publish(msg, topic=topic)
            return f"topic {topic}", [_ack_json(ack)], [_ack_text(ack)]
        if group is not None:
            ack = await bus.multicast(group, msg)
            return f"group {group}", [_ack_json(ack)], [_ack_text(ack)]
        if broadcast:
            ack = await bus.broadcast(msg)
            return "every agent", [_ack_json(ack)], [_ack_text(ack)]
        acks = await bus.send(msg)
        return (
            ", ".join(receivers),
            [_ack_json(a, r) for a, r in zip(acks, receivers, strict=True)],
            [_ack_text(a) for a in acks],
        )

    where, acks, texts = run_on_bus(work)
    if options["as_json"]:
        click.echo(json.dumps({"message_id": msg.message_id, "to": where, "acks": acks}))
        return
    click.echo(f"sent {msg.message_id} to {where}: {'; '.join(texts)}")


@click.command()
@click.argument("receiver", callback=valid_id("agent id"))
@click.argument("content", required=False)
@click.option(
    "--timeout",
    metavar="SECONDS",
    type=click.FloatRange(0.001, 3600),
    help="Seconds to wait for the reply  [default: ACLBUS_REQUEST_TIMEOUT]",
)
@message_options("request")
def request(receiver: str, content: str | None, timeout: float | None, **options: Any) -> None:
    """Send a request to RECEIVER and print its reply; the exit code says how it went.

    0: a reply; 3: no reply within --timeout; 4: no agent serves RECEIVER; 5: the reply is
    refuse, failure or not-understood (printed too); 1: another aclbus error; 2: bad usage.
    """
    fields = _fields(options, content)
    fields["receiver_id"] = receiver
    msg = _build_message(fields)
    err = Console(stderr=True, highlight=False, soft_wrap=True)

    async def work(bus: Bus) -> ACLMessage:
        await note_reach(bus, err)
        return await bus.request(msg, timeout=timeout)

    reply = run_on_bus(work)
    if options["as_json"]:
        click.echo(json.dumps(envelope_json(reply)))
    else:
        Console(highlight=False, soft_wrap=True).print(message_line(reply))
    if reply.performative in REFUSALS:
        raise click.exceptions.Exit(int(ExitCode.REFUSED))
