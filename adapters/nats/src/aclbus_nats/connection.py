"""The backend's one NATS connection: FastStream's broker, the embedded server, what it reports.

`NatsConnection` owns the `NatsBroker` (which owns the nats-py client: options, reconnects,
drain on close), starts and stops an embedded nats-server when no server is configured, and
holds what every other part of the backend asks of the connection: the nats-py client and its
JetStream context, the shared reply inbox, the permission watch and the server's version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from faststream.nats import NatsBroker

from aclbus.connection_options import ConnectionOptions
from aclbus.errors import AuthenticationError, BackendClosed, ConfigurationError, TLSError
from aclbus.permissions import Permissions
from aclbus.settings import Settings
from aclbus_nats.deprecated import join, legacy_options
from aclbus_nats.headers import install as install_header_codec
from aclbus_nats.inbox import REPLY_WINDOW, ReplyInbox
from aclbus_nats.permissions import PermissionWatch, ViolationLogFilter
from aclbus_nats.reconnect import jittered_reconnect
from aclbus_nats.security import auth_refusal, not_tls, security, tls_refusal
from aclbus_nats.server_info import host_port, read_info
from aclbus_nats.settings import NatsSettings

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

    from aclbus_nats.server import EmbeddedServer

__all__ = [
    "MIN_TTL_SERVER",
    "NOT_CONNECTED",
    "EofOverSSLFilter",
    "NatsConnection",
    "announced_version",
]

log = logging.getLogger("aclbus.nats")
# FastStream logs through this logger (the broker's ``logger=``): not a violation as a broken
# connection with a traceback; `NatsConnection` logs it once instead.
log.addFilter(ViolationLogFilter())


class EofOverSSLFilter(logging.Filter):
    """Drops asyncio's one warning that every TLS connection of nats-py makes, and only it.

    nats-py's protocol returns True from ``eof_received``; asyncio's SSL transport cannot keep
    a half-closed TLS connection open and logs ``returning true from eof_received() has no
    effect when using ssl`` at WARNING each time a TLS connection ends. It says nothing about
    the connection that is worth a warning.
    """

    MESSAGE = "returning true from eof_received() has no effect when using ssl"

    def filter(self, record: logging.LogRecord) -> bool:
        """False (drop) for that one message."""
        return not (record.msg == self.MESSAGE and not record.args)


def _quiet_eof_over_ssl() -> None:
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, EofOverSSLFilter) for f in asyncio_log.filters):
        asyncio_log.addFilter(EofOverSSLFilter())


MIN_TTL_SERVER = (2, 11)
"""Per-message TTL (``Nats-TTL``, ``allow_msg_ttl``) needs nats-server 2.11 or newer."""

NOT_CONNECTED = "the NATS backend is not connected"
"""The `BackendClosed` message of a call made before `NatsConnection.connect`."""
_REQUESTS_KEPT = 4096
"""Reply subjects of requests received a connection under a policy remembers at most."""
_SHARE_ATTEMPTS = 3
"""Rounds of find-or-start on a shared store dir before giving up (start races lost)."""
_SHARE_TIMEOUT = 10.0
"""Seconds to wait for another process's embedded server to answer healthy."""
_SHARE_LINGER = 3.0
"""Seconds a shared embedded server waits for other processes' clients to leave at stop."""


def announced_version(nc: Client) -> tuple[int, int, int]:
    """The version the server announced in its INFO; ``(0, 0, 0)`` when unreadable.

    nats-py's ``connected_server_version`` raises on a version that is not strict semver (a
    development build): the INFO's own text is read instead.
    """
    info = nc._server_info  # noqa: SLF001 -- nats-py keeps the INFO only here
    raw = str(info.get("version", "0.0.0"))
    parts = [*raw.split("-", 1)[0].split("."), "0", "0", "0"][:3]
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return (0, 0, 0)


class NatsConnection:
    """The connection to NATS, made by FastStream's broker, and the embedded server if any.

    Args:
        settings: The bus' settings (its data dir holds an embedded server's store).
        nats: Connection settings.
        server: An embedded server to use (and stop on close) instead of starting one when
            ``nats.servers`` is empty.

    Raises:
        ConfigurationError: The deprecated TLS or credential settings of ``nats`` cannot work
            (two ways to authenticate, a TLS file that is no certificate).
    """

    def __init__(
        self, settings: Settings, nats: NatsSettings, server: EmbeddedServer | None
    ) -> None:
        self.nats_settings = nats
        if server is None and not nats.servers:
            from aclbus_nats.server import EmbeddedServer
            from aclbus_nats.server.process import reserve_port

            store = nats.embedded_store_dir
            if store is None and settings.data_dir is not None:
                store = settings.data_dir / "nats"
            server = EmbeddedServer(store_dir=store, port=reserve_port())
            self._owns_server = True
        else:
            self._owns_server = False
        # A store dir that outlives the process may be served by another process already:
        # connect to that server rather than start a second one on the same store.
        self._shared_store = store if self._owns_server else None
        self.server = server
        """The embedded server, when the backend runs one."""
        self.permissions = PermissionWatch()
        """The server's permission violations, matched to the calls waiting for them."""
        self._policy: Permissions | None = None
        self._requests: dict[str, None] = {}  # reply subjects of requests received (a policy's)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._inbox: ReplyInbox | None = None
        self._version: tuple[int, int, int] = (0, 0, 0)
        self._closing = False
        self._last_error: Exception | None = None
        # While connect() runs: set at the first refused TLS handshake or authentication,
        # with the error to raise and the problem.
        self._refused: asyncio.Event | None = None
        self._refusal: tuple[type[TLSError | AuthenticationError], str] | None = None
        self._reconnected: list[Callable[[], None]] = []
        self.reconnects = 0
        """Times the connection came back after it was lost (metrics read it)."""
        self.permissions.listen(self._on_violation)
        self._legacy = legacy_options(nats)
        self.plugin_options = ConnectionOptions()
        """What the plugins gave (`configure`), without the deprecated settings' parts."""
        self.options = self._legacy
        """TLS and credentials: the plugins' (`configure`) and the deprecated settings'."""
        self._security = security(self.options)
        self._broker: NatsBroker | None = None

    def configure(self, options: ConnectionOptions) -> None:
        """Use the plugins' TLS and credentials (with the deprecated settings' parts).

        Raises:
            ConfigurationError: Connected already; a part given both by a plugin and by a
                deprecated setting; a TLS file that is no certificate.
        """
        if self._nc is not None:
            raise ConfigurationError(
                "the NATS backend is connected: its connection options are set before connect"
            )
        joined = join(options, self._legacy)
        if joined == self.options:
            return
        self._security = security(joined)
        self.plugin_options = options
        self.options = joined
        self._broker = None  # made again, with these options, when it is next needed

    @property
    def policy(self) -> Permissions | None:
        """What a policy lets this connection do (`NatsBackend.enforce`).

        The server enforces it; the backend reads it to ask the server less, to wait for its
        verdict, and for the prefix of its reply inboxes.
        """
        return self._policy

    @policy.setter
    def policy(self, permissions: Permissions | None) -> None:
        if self._nc is not None:
            raise ConfigurationError(
                "the NATS backend is connected: its policy is set before connect"
            )
        before = self._policy.inbox_prefix if self._policy is not None else None
        self._policy = permissions
        if (permissions.inbox_prefix if permissions is not None else None) != before:
            self._broker = None  # made again, with this inbox prefix, when next needed

    @property
    def broker(self) -> NatsBroker:
        """FastStream's broker: it makes, reconnects and drains the nats-py client."""
        if self._broker is None:
            # The embedded server's ports are picked already, so the broker knows its URL
            # from the start (FastStream reads its servers when the broker is made).
            self._broker = NatsBroker(servers=self.urls, **self._broker_options())
        return self._broker

    @property
    def urls(self) -> list[str]:
        """The server URLs the connection uses (the embedded server's, when it runs one)."""
        server = self.server
        return list(self.nats_settings.servers) or [server.url if server else ""]

    def _broker_options(self) -> dict[str, Any]:
        n = self.nats_settings
        options: dict[str, Any] = {
            "name": n.name,
            "connect_timeout": n.connect_timeout,
            "reconnect_time_wait": n.reconnect_time_wait,
            "reconnect_to_server_handler": jittered_reconnect(
                n.reconnect_time_wait, n.reconnect_jitter
            ),
            "max_reconnect_attempts": n.max_reconnect_attempts,
            "ping_interval": n.ping_interval,
            "pending_size": n.reconnect_buffer,
            "max_outstanding_pings": n.max_outstanding_pings,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "logger": log,
            "log_level": logging.DEBUG,
        }
        if self._security is not None:
            options["security"] = self._security
        if self._policy is not None and self._policy.inbox_prefix is not None:
            # The only inboxes the policy lets this user subscribe to (aclbus_auth.policy).
            options["inbox_prefix"] = self._policy.inbox_prefix
        return options

    # -- what the connection reports ---------------------------------------------------------

    @property
    def nc(self) -> Client | None:
        """The nats-py client while connected, else None."""
        return self._nc

    @property
    def js(self) -> JetStreamContext | None:
        """The client's JetStream context while connected, else None."""
        return self._js

    @property
    def connected(self) -> bool:
        """True while connected to a server."""
        return self._nc is not None and self._nc.is_connected

    @property
    def server_version(self) -> tuple[int, int, int]:
        """The connected server's version (``(0, 0, 0)`` before the first connection)."""
        return self._version

    @property
    def msg_ttl(self) -> bool:
        """Whether the server keeps a per-message TTL (``Nats-TTL``, ``allow_msg_ttl``)."""
        return self._version[:2] >= MIN_TTL_SERVER

    @property
    def max_payload(self) -> int | None:
        """The server's ``max_payload`` while connected."""
        return self._nc.max_payload if self._nc is not None else None

    def note_request(self, reply: str) -> None:
        """Remember that a request with reply subject ``reply`` reached this connection.

        Only under a policy (nothing is kept otherwise): its reply is one the server allows
        (``allow_responses``), so `answering` spares it the wait for the server's verdict.
        """
        if self.policy is None:
            return
        requests = self._requests
        if len(requests) >= _REQUESTS_KEPT:
            del requests[next(iter(requests))]  # the oldest: its reply then waits for the verdict
        requests[reply] = None

    def answering(self, subject: str) -> bool:
        """Whether ``subject`` is the reply subject of a request received (forgotten now)."""
        if subject not in self._requests:
            return False
        del self._requests[subject]
        return True

    def require(self) -> tuple[Client, JetStreamContext]:
        """The client and its JetStream context.

        Raises:
            BackendClosed: Not connected.
        """
        if self._nc is None or self._js is None:
            raise BackendClosed(NOT_CONNECTED)
        return self._nc, self._js

    def replies(self) -> tuple[Client, ReplyInbox]:
        """The client and its reply inbox.

        Raises:
            BackendClosed: Not connected.
        """
        if self._nc is None or self._inbox is None:
            raise BackendClosed(NOT_CONNECTED)
        return self._nc, self._inbox

    def on_reconnected(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after each reconnection, once waiting publishes were interrupted."""
        self._reconnected.append(listener)

    # -- nats-py's callbacks -----------------------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        if self.permissions.observe(exc):
            return
        self._last_error = exc
        log.warning("nats: %s", exc)
        if self._refused is not None:
            if (problem := tls_refusal(exc, self.options.tls)) is not None:
                self._refusal = (TLSError, problem)
                self._refused.set()
            elif (
                problem := auth_refusal(
                    exc, self.options.credentials, self.nats_settings.servers, self.options.tls
                )
            ) is not None:
                self._refusal = (AuthenticationError, problem)
                self._refused.set()

    async def _on_disconnected(self) -> None:
        if not self._closing:  # our own close drains and disconnects: nothing to warn about
            log.warning("nats: disconnected")

    def _on_violation(self, op: str, subject: str) -> None:
        # Once per -ERR from the server; the subject as nats-py reports it (lower case).
        log.warning(
            "nats: permissions violation: this connection may not %s to %r; the call waiting "
            "for it fails with PermissionDenied, the connection stays up",
            op,
            subject,
        )
        if self._inbox is not None:
            self._inbox.deny(op, subject)

    async def _on_reconnected(self) -> None:
        url = self._nc.connected_url.netloc if self._nc and self._nc.connected_url else "?"
        log.warning("nats: reconnected to %s", url)
        self.reconnects += 1
        if self._inbox is not None:
            # A server that went away never sends the PubAck of what it got just before:
            # publishes with a Nats-Msg-Id are sent again (and stored once).
            self._inbox.interrupt()
        for listener in self._reconnected:
            listener()

    # -- life cycle --------------------------------------------------------------------------

    async def connect(self) -> None:
        """Start the embedded server if none is configured, then connect.

        Raises:
            TLSError: A certificate was refused (the server's, or the lack of ours), at the
                first refused handshake.
            AuthenticationError: The server refused the credentials (or their lack), at the
                first refusal.
            BackendClosed: No server answered in time, or the connection was refused.
            ConfigurationError: The server has no JetStream.
        """
        if self._nc is not None:
            return
        await self._start_embedded()
        n = self.nats_settings
        servers = ", ".join(n.masked_servers()) or "embedded"
        # nats-py retries the first connection as often as a reconnection (forever, by
        # default): a start-up with no server reachable would never return.
        limit = n.connect_timeout * (len(n.servers) + 1)
        self._last_error = None
        try:
            await self._refuse_plaintext(servers)
            self._nc = await self._first_connection(limit, servers)
        except (TLSError, AuthenticationError):
            await self._stop_embedded()
            raise
        except TimeoutError:
            await self._stop_embedded()
            last = self._last_error
            raise BackendClosed(
                f"cannot connect to NATS at {servers}: no server answered within {limit:g} s"
                + (f" (last error: {type(last).__name__}: {last})" if last else "")
            ) from None
        except Exception as exc:
            await self._stop_embedded()
            raise BackendClosed(
                f"cannot connect to NATS at {servers}: {type(exc).__name__}: {exc}"
            ) from exc
        install_header_codec(self._nc)  # nats-py's header reading and writing, for less
        self._js = self._nc.jetstream(timeout=n.publish_timeout)
        self._version = announced_version(self._nc)
        self._inbox = ReplyInbox(self._nc, REPLY_WINDOW)
        await self._inbox.start()
        try:
            await self._js.account_info()
        except Exception as exc:
            where = self._nc.connected_url.netloc if self._nc.connected_url else "the server"
            await self.close()
            raise ConfigurationError(
                f"JetStream is not available on {where} ({type(exc).__name__}: {exc}); "
                "start nats-server with -js"
            ) from exc

    async def _refuse_plaintext(self, servers: str) -> None:
        """Refuse a server that does not require TLS when TLS is wanted, before the CONNECT.

        Raises:
            TLSError: A configured server's INFO has no ``tls_required``.
        """
        tls = self.options.tls
        urls = self.urls
        if tls is None and not any(url.startswith("tls://") for url in urls):
            return
        _quiet_eof_over_ssl()
        if tls is not None and tls.handshake_first:
            return  # the handshake comes first: a plaintext server fails it (tls_refusal)
        # All at once: a server that does not answer costs connect_timeout once, not per URL.
        timeout = self.nats_settings.connect_timeout
        infos = await asyncio.gather(*(read_info(url, timeout) for url in urls))
        for url, info in zip(urls, infos, strict=True):
            if info is not None and not info.get("tls_required"):
                host, port = host_port(url)
                raise TLSError(f"NATS at {servers}", not_tls(f"{host}:{port}", tls))

    async def _first_connection(self, limit: float, servers: str) -> Client:
        """The broker's connection, given up after ``limit`` s or at a refused certificate.

        Raises:
            TLSError: A TLS handshake was refused: trying again would not change a certificate.
            AuthenticationError: The server refused the credentials: trying again would not
                change them (FastStream's broker gives up at the first refusal too).
            TimeoutError: No connection within ``limit`` s.
        """
        self._refusal = None
        refused = self._refused = asyncio.Event()
        connecting = asyncio.ensure_future(self.broker.connect())
        waiting = asyncio.ensure_future(refused.wait())
        try:
            await asyncio.wait(
                {connecting, waiting}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            self._refused = None
            waiting.cancel()
            if not connecting.done():
                connecting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await connecting
        failed = None if connecting.cancelled() else connecting.exception()
        if not connecting.cancelled() and failed is None:
            return connecting.result()
        if self._refusal is not None:
            kind, problem = self._refusal
            raise kind(f"NATS at {servers}", problem) from failed
        if failed is not None:
            raise failed  # the broker's own error
        raise TimeoutError

    @contextlib.asynccontextmanager
    async def closing(self) -> AsyncIterator[None]:
        """Drain and close the connection after the block, then stop an embedded server.

        The block still has the connection (to unsubscribe); a disconnection meanwhile is our
        own, and not warned about.
        """
        self._closing = True
        try:
            yield
        finally:
            try:
                await self._disconnect()
            finally:
                self._closing = False

    async def close(self) -> None:
        """Drain and close the connection, then stop an embedded server."""
        async with self.closing():
            pass

    async def _disconnect(self) -> None:
        if self._nc is not None:
            try:
                await self.broker.stop()
            except Exception as exc:  # a connection already lost cannot drain
                log.debug("nats: closing: %s", exc)
                with contextlib.suppress(Exception):
                    await self._nc.close()
        if self._inbox is not None:
            self._inbox.close()
            self._inbox = None
        self._nc = None
        self._js = None
        await self._stop_embedded()

    async def _start_embedded(self) -> None:
        if self.server is None or not self._owns_server or self.server.running:
            return
        if self._shared_store is None:
            await self.server.astart()
            return
        from aclbus_nats.server import StoreDirInUse, serving

        # Bounded: each round either finds a server, starts one, or lost a start race to a
        # process that started one meanwhile (which the next round finds).
        for _ in range(_SHARE_ATTEMPTS):
            url = await asyncio.to_thread(serving, self._shared_store, timeout=_SHARE_TIMEOUT)
            if url is not None:
                self._share(url)
                return
            try:
                await self.server.astart()
                return
            except StoreDirInUse:
                continue
        await self.server.astart()  # the last word: its error says the store is in use

    def _share(self, url: str) -> None:
        """Use the embedded server another process runs on our store dir, as a client."""
        log.info("nats: using the embedded nats-server at %s (another process runs it)", url)
        self.server = None
        self._owns_server = False
        self.nats_settings = self.nats_settings.model_copy(update={"servers": [url]})
        self._broker = None  # made again, for that server's URL

    async def _stop_embedded(self) -> None:
        if self.server is not None and self._owns_server:
            if self._shared_store is not None and self.server.running:
                from aclbus_nats.server import wait_unused

                # Other processes may use the server (a second `aclbus send`): let theirs
                # finish before it goes, for a while; a long-lived one loses it then.
                await asyncio.to_thread(wait_unused, self.server, timeout=_SHARE_LINGER)
            await self.server.astop()
