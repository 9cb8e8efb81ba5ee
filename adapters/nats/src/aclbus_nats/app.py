"""The FastStream app of a bus on NATS: `faststream run` serves its agents, `docs gen` lists them.

`make_app` (reached as ``bus.app``) builds a ``faststream.FastStream`` app on the backend's
`NatsBroker`. FastStream gives the process its life cycle (``faststream run module:app``, signals,
hooks) and the AsyncAPI document; the messages themselves never go through FastStream's
per-message path: the agents' subscriptions are made by `NatsBackend` on the broker's nats-py
connection (DESIGN.md, "The hot path").

Life cycle, in the order FastStream runs it::

    on_startup     bus.start(): the embedded nats-server if any, broker.connect(), streams,
                   agents; then the user's own on_startup hooks (the bus is up: they may send)
    broker.start() already connected; starts FastStream subscribers the user added, if any
    after_startup  the user's hooks
    -- running --
    on_shutdown    the user's hooks (the bus is still up), then bus.stop(): agents stop,
                   broker.stop() drains the connection, the embedded server stops
    broker.stop()  a no-op by then: already stopped
    after_shutdown the user's hooks

``faststream run --workers N`` runs the app in N processes, each with a bus of its own. They
must share one NATS server: with no ``ACLBUS_NATS__SERVERS`` each worker would start an
embedded server of its own, and the workers would not see each other's messages. Each worker
refuses that at start-up (`WORKERS_NEED_A_SERVER`) and asks FastStream's supervisor to stop,
rather than failing into FastStream's endless restarts of a worker that exits.

The AsyncAPI document is made when it is asked for (``faststream docs gen``, ``docs serve``,
``app.schema.to_specification()``), from the agents the bus has at that moment: agents made
after ``bus.app`` are listed too. They are added as plain documentation objects, never as
FastStream subscribers, so documenting an agent cannot open a second subscription to its
messages.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from typing import TYPE_CHECKING, Final, Protocol

from faststream import FastStream

from aclbus import __version__
from aclbus.acl import ACL_VERSION
from aclbus.errors import ConfigurationError
from aclbus_nats.asyncapi import ACL_HEADERS_SCHEMA, BusAsyncAPI

if TYPE_CHECKING:
    from faststream.nats import NatsBroker

    from aclbus import Bus
    from aclbus_nats.server import EmbeddedServer

__all__ = ["ACL_HEADERS_SCHEMA", "WORKERS_NEED_A_SERVER", "BusAsyncAPI", "make_app"]

log = logging.getLogger("aclbus.nats")

WORKERS_NEED_A_SERVER: Final = (
    "faststream run --workers: the workers would each start an embedded nats-server of their "
    "own (ACLBUS_NATS__SERVERS is not set), and agents in different workers would never see "
    "each other's messages, streams or KV buckets. Start one nats-server (nats-server -js) and "
    "set ACLBUS_NATS__SERVERS=nats://host:4222 for every worker, or run a single worker "
    "without --workers. Stopping faststream run (worker {worker})."
)
"""What a worker of ``faststream run --workers`` says when it has no server to share."""

_SUPERVISOR_GRACE = 60.0
"""Seconds a refusing worker waits for the supervisor to stop it before failing by itself
(FastStream's supervisor gives each worker 30 s to stop)."""


class BrokerBackend(Protocol):
    """What `make_app` needs of a backend; `NatsBackend` is one.

    A protocol rather than `NatsBackend` itself: the backend imports this module (in
    `NatsBackend.make_app`), and this module does not import the backend back.
    """

    @property
    def broker(self) -> NatsBroker:
        """The FastStream broker that owns the connection; it becomes the app's broker."""
        ...

    @property
    def server(self) -> EmbeddedServer | None:
        """The embedded server the backend runs, if any."""
        ...


def make_app(backend: BrokerBackend, bus: Bus) -> FastStream:
    """A FastStream app on ``backend.broker`` that runs ``bus`` (what `Bus.app` returns).

    The bus starts in the app's first ``on_startup`` hook, so before ``broker.start()``: the
    embedded nats-server (with no ``ACLBUS_NATS__SERVERS``) is up before anything connects. It
    stops in the app's last ``on_shutdown`` hook, after the user's own, so that they can still
    send. Stopping the bus stops the broker and the embedded server; FastStream's own
    ``broker.stop()`` that follows finds nothing left to do, and neither fails if the broker
    was stopped by hand before.

    The AsyncAPI document (``faststream docs gen module:app``) lists each agent's inbox,
    request subject, broadcast, group and topic subscriptions with the ACL headers and the
    handlers' payload schemas (see `BusAsyncAPI`). Title, version and description come from
    the bus and can be changed on ``app.schema`` (``app.schema.title = "Billing agents"``).

    Args:
        backend: The bus' backend; its broker becomes the app's broker.
        bus: The bus to run.

    Returns:
        The app, for ``faststream run module:app``.

    Raises:
        ConfigurationError: ``backend`` is not the bus' backend.
    """
    # As an object: the bus types its backend as `Backend`, which the protocol is not.
    own: object = bus.backend
    if own is not backend:
        raise ConfigurationError(
            "make_app() needs the bus' own backend: use `bus.app` rather than calling it"
        )
    prefix = bus.settings.subject_prefix
    specification = BusAsyncAPI(
        bus,
        title="aclbus" if prefix == "aclbus" else f"aclbus {prefix}",
        version=__version__,
        description=(
            f"The agents of an aclbus bus (subject prefix `{prefix}`) on NATS JetStream. "
            f"Every message follows the aclbus wire format {ACL_VERSION}: the envelope in "
            "CloudEvents `ce-*` and FIPA ACL `acl-*` headers, the payload as the body (JSON "
            "by default)."
        ),
    )
    stop_registered = False

    async def start_bus(worker_id: int | None = None) -> None:
        # FastStream passes worker_id to on_startup hooks: None unless `run --workers N`.
        if worker_id is not None and backend.server is not None:
            await _refuse_worker(worker_id)
        nonlocal stop_registered
        await bus.start()
        if not stop_registered:
            # Registered now rather than with the app, so that it comes after every
            # on_shutdown hook the user's module added: those still find the bus running.
            app.on_shutdown(stop_bus)
            stop_registered = True

    async def stop_bus() -> None:
        await bus.stop()

    app = FastStream(backend.broker, on_startup=[start_bus], specification=specification)
    return app


async def _refuse_worker(worker_id: int) -> None:
    """Refuse to run worker ``worker_id`` on an embedded server of its own; stop the run.

    Raising from the start-up hook would not do: FastStream's supervisor restarts a worker
    that exits, forever, each time with a traceback. So the worker logs why, sends SIGTERM to
    the supervisor (its parent, which then stops every worker and exits), and waits here to be
    stopped with the others, having started nothing.

    Raises:
        ConfigurationError: No supervisor to stop, or it did not stop this worker in time.
    """
    message = WORKERS_NEED_A_SERVER.format(worker=worker_id)
    log.error("%s", message)
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid == os.getppid():
        os.kill(parent.pid, signal.SIGTERM)  # FastStream's supervisor: stop every worker
        await asyncio.sleep(_SUPERVISOR_GRACE)  # cancelled when the supervisor stops us
    raise ConfigurationError(message)
