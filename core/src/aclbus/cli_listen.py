"""``aclbus listen``: follow an agent's inbox, topics, groups or broadcasts, without consuming.

The listener is a tap: on a persistent backend each source gets an ephemeral consumer of its
own (no durable name, no queue group), so the agents' durable consumers keep every message
and the listener takes none away from them; it acks only its own copies. On a backend that
stores nothing it is a plain subscription, which likewise takes nothing from anyone. It shows
messages as they are on the wire: no agent's consume middleware runs for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import click
from rich.console import Console

from aclbus import wire
from aclbus.acl import ACLMessage, Performative
from aclbus.backend import DeliveryMode, Received, Subscription, SubscriptionSpec
from aclbus.bus import Bus
from aclbus.cli_bus import TimedOut, run_on_bus
from aclbus.cli_messages import envelope_json, message_line, note_reach, valid_id, valid_topic
from aclbus.errors import ACLDecodeError

__all__ = ["Filters", "listen", "tap_specs"]

_PERFORMATIVES = click.Choice([p.value for p in Performative], case_sensitive=False)
_UNSUBSCRIBE_TIMEOUT = 1.0  # seconds for letting go of every subscription at the stop


@dataclass(frozen=True, slots=True)
class Filters:
    """Which messages ``listen`` shows: all, when both are empty.

    Attributes:
        performatives: Only these acts.
        message_type: Only this message type.
    """

    performatives: frozenset[str] = field(default_factory=frozenset)
    message_type: str | None = None

    def match(self, msg: ACLMessage) -> bool:
        """Whether ``msg`` passes."""
        if self.performatives and msg.performative.value not in self.performatives:
            return False
        return self.message_type is None or msg.message_type == self.message_type


def tap_specs(
    bus: Bus,
    *,
    agents: tuple[str, ...] = (),
    topics: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
    broadcast: bool = False,
    deliver: Literal["all", "new"] = "new",
) -> Iterator[SubscriptionSpec]:
    """The subscriptions of a tap on these sources: nobody's messages taken away.

    An agent's inbox is its inbox subject and its priority lane. ``deliver="all"`` replays
    what the streams hold first (where the backend stores messages).
    """
    stored = bus.backend.capabilities.persistent
    subjects = bus.subjects
    sources = [s for a in agents for s in (subjects.inbox(a), subjects.priority_inbox(a))]
    sources += [subjects.topic(t, pattern=True) for t in topics]
    sources += [subjects.group(g) for g in groups]
    for subject in sources:
        if stored:
            yield SubscriptionSpec(subject=subject, deliver=deliver)
        else:
            yield SubscriptionSpec(subject=subject, mode=DeliveryMode.AT_MOST_ONCE)
    if broadcast:
        kept = stored and bus.settings.broadcast_mode is DeliveryMode.AT_LEAST_ONCE
        yield SubscriptionSpec(
            subject=subjects.broadcast,
            mode=DeliveryMode.AT_LEAST_ONCE if kept else DeliveryMode.AT_MOST_ONCE,
            deliver=deliver,
        )


class _Listener:
    """Decodes, filters and prints deliveries, and says when to stop."""

    def __init__(self, bus: Bus, filters: Filters, count: int | None, as_json: bool) -> None:
        self.bus = bus
        self.filters = filters
        self.count = count
        self.as_json = as_json
        self.shown = 0
        self.done = asyncio.Event()
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    async def on_delivery(self, received: Received) -> None:
        try:
            if not self.done.is_set():
                self._show(received)
        finally:
            await received.ack()  # its own copy: the agents' consumers keep theirs

    def _show(self, received: Received) -> None:
        try:
            msg = wire.decode(
                received.headers,
                received.body,
                self.bus.codecs,
                max_bytes=self.bus.settings.max_message_bytes,
            )
        except ACLDecodeError as exc:
            self.err.print(f"skipped a message on {received.subject} that is not ACL: {exc}")
            return
        if not self.filters.match(msg):
            return
        if self.as_json:
            click.echo(json.dumps(envelope_json(msg)))  # click.echo flushes: one line at once
        else:
            self.out.print(message_line(msg))
        self.shown += 1
        if self.count is not None and self.shown >= self.count:
            self.done.set()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@click.command()
@click.option(
    "--agent",
    "agents",
    multiple=True,
    metavar="ID",
    callback=valid_id("agent id"),
    help="Follow this agent's inbox; repeat for several.",
)
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="PATTERN",
    callback=valid_topic(True),
    help="Follow a topic pattern (orders.*, orders.>); repeat for several.",
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    callback=valid_id("group"),
    help="Follow a group's messages; repeat for several.",
)
@click.option("--broadcast", is_flag=True, help="Follow the broadcasts to every agent.")
@click.option(
    "--performative",
    "-p",
    "performatives",
    multiple=True,
    type=_PERFORMATIVES,
    metavar="ACT",
    help="Show only this act; repeat for several.",
)
@click.option("--type", "message_type", metavar="TYPE", help="Show only this message type.")
@click.option("--replay", is_flag=True, help="First show what the streams hold, then follow.")
@click.option("--count", metavar="N", type=click.IntRange(1), help="Stop after this many messages.")
@click.option(
    "--timeout",
    metavar="SECONDS",
    type=click.FloatRange(0.001),
    help="Stop after this many seconds in all (exit 3 if --count was not reached).",
)
@click.option("--json", "as_json", is_flag=True, help="One envelope JSON per line.")
def listen(
    agents: tuple[str, ...],
    topics: tuple[str, ...],
    groups: tuple[str, ...],
    broadcast: bool,
    performatives: tuple[str, ...],
    message_type: str | None,
    replay: bool,
    count: int | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Print the messages of agents' inboxes, topics, groups or broadcasts as they come.

    A tap: the agents still get every message, the listener takes none away. Ctrl-C (or
    SIGTERM) stops it, with exit 0.
    """
    if not (agents or topics or groups or broadcast):
        raise click.UsageError("give at least one of --agent, --topic, --group, --broadcast")
    filters = Filters(frozenset(p.lower() for p in performatives), message_type)

    async def work(bus: Bus) -> tuple[int, bool]:
        listener = _Listener(bus, filters, count, as_json)
        await note_reach(bus, listener.err)
        subscriptions: list[Subscription] = []
        loop = asyncio.get_running_loop()
        stopped = False

        def stop() -> None:
            nonlocal stopped
            stopped = True
            listener.done.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        try:
            for spec in tap_specs(
                bus,
                agents=agents,
                topics=topics,
                groups=groups,
                broadcast=broadcast,
                deliver="all" if replay else "new",
            ):
                subscriptions.append(await bus.backend.subscribe(spec, listener.on_delivery))
            listener.err.print(f"listening on {len(subscriptions)} subject(s); Ctrl-C stops")
            started = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listener.done.wait(), timeout)
            timed_out = not listener.done.is_set() and timeout is not None
            if timed_out:
                listener.err.print(
                    f"stopped after {time.monotonic() - started:.1f} s: {listener.shown} message(s)"
                )
            return listener.shown, timed_out and count is not None and not stopped
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            # Bounded: with the broker gone (a shared embedded server that stopped), each
            # unsubscribe would wait for its own timeout; the bus closes them all the same.
            with contextlib.suppress(Exception, TimeoutError):
                async with asyncio.timeout(_UNSUBSCRIBE_TIMEOUT):
                    for subscription in subscriptions:
                        await subscription.unsubscribe()

    # Until the loop's handlers are in place (while the bus starts), SIGTERM is a Ctrl-C.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        shown, short = run_on_bus(work)
    except KeyboardInterrupt:
        return  # stopped before it listened: nothing was missed that it promised to show
    finally:
        signal.signal(signal.SIGTERM, previous)
    if short:
        raise TimedOut(f"{shown} of {count} message(s) within {timeout:g} s")
