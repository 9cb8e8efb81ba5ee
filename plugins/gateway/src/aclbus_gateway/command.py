"""``aclbus serve``: the gateway under uvicorn, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
from collections.abc import Iterator

import click
import uvicorn

from aclbus import ACLBusError, Settings
from aclbus.redaction import redact
from aclbus_gateway.app import create_app
from aclbus_gateway.bus_metrics import gateway_bus
from aclbus_gateway.settings import GatewaySettings

__all__ = ["serve"]

STARTUP_TIMEOUT = 30.0
"""Seconds uvicorn may take to bind its socket once the bus is up."""


class _Server(uvicorn.Server):
    """uvicorn's server, stopping on SIGINT/SIGTERM without re-raising the signal after.

    uvicorn re-raises a caught signal once it has shut down, so the process dies of it; the
    command stops cleanly instead, stops its bus and exits 0.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Bind and start serving (uvicorn's), then set `listening`."""
        await super().startup(sockets)
        if self.started:
            self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _stop(self) -> None:
        if self.should_exit:
            self.force_exit = True  # a second signal: stop waiting for open connections
        self.should_exit = True


def _ssl_options(gateway: GatewaySettings) -> dict[str, object]:
    if gateway.tls_certfile is None:
        if gateway.tls_keyfile is not None or gateway.tls_client_ca is not None:
            raise click.UsageError(
                "ACLBUS_GATEWAY__TLS_KEYFILE and ACLBUS_GATEWAY__TLS_CLIENT_CA need "
                "ACLBUS_GATEWAY__TLS_CERTFILE (the server's certificate)"
            )
        return {}
    options: dict[str, object] = {"ssl_certfile": str(gateway.tls_certfile)}
    if gateway.tls_keyfile is not None:
        options["ssl_keyfile"] = str(gateway.tls_keyfile)
    if gateway.tls_client_ca is not None:
        options["ssl_ca_certs"] = str(gateway.tls_client_ca)
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options


async def _serve(settings: Settings, gateway: GatewaySettings) -> None:
    bus = gateway_bus(settings, metrics=gateway.metrics)
    try:  # the tokens and the policy first: a mistake there needs no broker to be told
        app = create_app(gateway=gateway, bus=bus)
    except ACLBusError as exc:
        raise click.ClickException(redact(str(exc))) from None
    try:
        await bus.start()
    except ACLBusError as exc:
        raise click.ClickException(f"the gateway's bus did not start: {redact(str(exc))}") from None
    try:
        config = uvicorn.Config(
            app,
            host=gateway.host,
            port=gateway.port,
            lifespan="on",
            log_level="warning",
            access_log=False,
            **_ssl_options(gateway),  # type: ignore[arg-type]
        )
        server = _Server(config)
        serving = asyncio.create_task(server.serve())
        listening = asyncio.create_task(server.listening.wait())
        await asyncio.wait(
            {serving, listening}, timeout=STARTUP_TIMEOUT, return_when="FIRST_COMPLETED"
        )
        listening.cancel()
        if not server.started:
            server.should_exit = True
            await serving
            raise click.ClickException(f"the gateway did not start listening on {gateway.host}")
        scheme = "https" if gateway.tls_certfile is not None else "http"
        for listener in server.servers:
            for sock in listener.sockets:
                host, port = sock.getsockname()[:2]
                click.echo(f"aclbus gateway listening on {scheme}://{host}:{port}")
        click.echo(f"backend: {bus.backend.name}; stop with Ctrl-C (SIGINT) or SIGTERM")
        await serving
    finally:
        await bus.stop()
    click.echo("aclbus gateway stopped")


@click.command("serve")
@click.option("--host", default=None, help="Listen on this address (ACLBUS_GATEWAY__HOST).")
@click.option(
    "--port",
    default=None,
    type=click.IntRange(0, 65535),
    help="Listen on this port; 0 picks a free one (ACLBUS_GATEWAY__PORT).",
)
def serve(host: str | None, port: int | None) -> None:
    """Serve the REST gateway (docs/operations.md, "Gateway") until SIGINT or SIGTERM."""
    try:
        settings = Settings()
        gateway = GatewaySettings()
    except (ACLBusError, ValueError) as exc:
        raise click.ClickException(redact(str(exc))) from None
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    if overrides:
        gateway = gateway.model_copy(update=overrides)
    asyncio.run(_serve(settings, gateway))
