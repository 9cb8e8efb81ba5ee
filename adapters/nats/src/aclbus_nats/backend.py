"""The NATS JetStream backend.

FastStream's `NatsBroker` owns the connection (options, reconnects, drain on close) and gives
the bus its FastStream app and AsyncAPI document. The message path runs on that same nats-py
connection without FastStream's per-message machinery (dependency injection, exit stacks,
context variables), which costs about ten times nats-py's own work per message (DESIGN.md, "The
hot path"): deliveries go straight from nats-py's subscription to the bus' middleware chain,
and acks are single publishes to the delivery's ack subject.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Mapping
from datetime import UTC
from typing import TYPE_CHECKING, Any, TypeVar

import nats.errors as nats_errors
import nats.js.errors as js_errors
import orjson
from faststream.nats import (
    NatsBroker,
    NatsCredentials,
    NatsNKey,
    NatsSecurity,
    NatsToken,
    NatsUserPassword,
)
from nats.js import api

from aclbus.backend import (
    Backend,
    Capabilities,
    DeliveryHandler,
    DeliveryMode,
    KeyValue,
    KVSpec,
    PublishAck,
    Received,
    Reply,
    StoredMessage,
    StreamSpec,
    StreamUsage,
    Subscription,
    SubscriptionSpec,
)
from aclbus.errors import (
    ACLBusError,
    BackendClosed,
    ConfigurationError,
    ConsumerLimitReached,
    HeadersTooLarge,
    MessageTooLarge,
    NoResponders,
    NoStream,
    PermissionDenied,
    PublishTimeout,
    RequestTimeout,
    StreamFull,
)
from aclbus.settings import Settings
from aclbus.subjects import check_filter, covers, subject_matches
from aclbus.wire import encoded_size
from aclbus_nats.headers import NatsHeaders, read_header_block
from aclbus_nats.headers import install as install_header_codec
from aclbus_nats.kv import NatsKeyValue
from aclbus_nats.permissions import Interrupted, PermissionWatch, ViolationLogFilter
from aclbus_nats.received import CoreReceived, JetStreamReceived
from aclbus_nats.reconnect import jittered_reconnect
from aclbus_nats.settings import NatsSettings

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NatsPySubscription
    from nats.js import JetStreamContext

    from aclbus_nats.server import EmbeddedServer

__all__ = ["NatsBackend", "NatsSubscription"]

log = logging.getLogger("aclbus.nats")
# FastStream logs through this logger (the broker's ``logger=``): not a violation as a broken
# connection with a traceback; `NatsBackend._on_violation` logs it once instead.
log.addFilter(ViolationLogFilter())

T = TypeVar("T")

MIN_TTL_SERVER = (2, 11)
"""Per-message TTL (``Nats-TTL``, ``allow_msg_ttl``) needs nats-server 2.11 or newer."""

_JS_MSG_SIZE_ERRORS = (10054,)  # JSStreamMessageExceedsMaximumErr


_NOT_SENT = (nats_errors.OutboundBufferLimitError, nats_errors.ConnectionClosedError)
"""nats-py's errors for a message it did not send (caught around each publish: a plain
``try``, as a context manager per message costs more than the rest of the call)."""


def _not_sent(exc: Exception, what: str, subject: str) -> BackendClosed:
    """nats-py's "not sent" error ``exc`` as `BackendClosed` naming the subject."""
    if isinstance(exc, nats_errors.OutboundBufferLimitError):
        return BackendClosed(
            f"the connection to NATS is down and its reconnect buffer is full; the {what} to "
            f"{subject!r} was not sent; send it again once reconnected "
            "(ACLBUS_NATS__RECONNECT_BUFFER sets the buffer's size)"
        )
    return BackendClosed(f"the NATS connection is closed; the {what} to {subject!r} was not sent")


_JS_STORE_ERRORS = (10002, 10023, 10047, 10077)  # account/server/stream storage limits
NATS_HEADER_ALLOWANCE = 512
"""Bytes a stream's ``max_msg_size`` allows beyond ``ACLBUS_MAX_MESSAGE_BYTES``: room for the
``Nats-Msg-Id`` and ``Nats-TTL`` headers the backend adds, which aclbus' own size check leaves
out (docs/wire-format.md, section 10). Without it a message just under the limit would pass the
bus' check and then be refused by the stream."""
JETSTREAM_MAX_HEADER_BYTES = 65535
"""The largest header block JetStream stores with a message (nats-server keeps its length in
16 bits): one byte more and the PubAck is error 10097, "header size exceeds maximum allowed of
64k", after the round trip. Core NATS has no such limit below ``max_payload``."""
_NO_RESPONDERS_PAUSE = 0.1
"""Seconds between publishes to a provisioned stream that JetStream did not answer."""
_JS_NO_MESSAGE = 10037  # JSNoMessageFoundErr: no message at (or after) that sequence
_JS_NO_SEQUENCE = 10043  # JSSequenceNotFoundErrF: delete of a sequence not stored
_JS_NO_STREAM = 10059  # JSStreamNotFoundErr
_INVALID_STREAM_CHARS = frozenset(">*. /\\\t\r\n")
"""Characters no stream name may hold (nats-py refuses them before asking the server)."""


KV_MAX_HISTORY = 64
"""Revisions per key a JetStream KV bucket keeps at most."""
KV_DUPLICATE_WINDOW = 120.0
"""The duplicate window nats-py (like the Go client) gives a bucket whose TTL is longer."""
_KV_SETTING = {"max_age": "ttl", "max_msgs_per_subject": "history", "num_replicas": "replicas"}
"""The stream settings of a bucket, by the `KVSpec` field they come from."""


def _kv_value(stream_field: str, value: object) -> str:
    """A bucket's stream setting as its `KVSpec` field reads it (no TTL: ``None``)."""
    if stream_field == "max_age":
        return f"{value:g}" if isinstance(value, float) and value else "None"
    return str(value)


def _storage_type(storage: str) -> api.StorageType:
    return api.StorageType.FILE if storage == "file" else api.StorageType.MEMORY


def _storage_name(storage: api.StorageType | None) -> str:
    return "memory" if storage == api.StorageType.MEMORY else "file"


DELIVER_PREFIX = "_INBOX.aclbus"
"""Deliver subjects of the shared durable consumers the backend makes:
``_INBOX.aclbus.<stream>.<consumer>`` (under ``_INBOX.`` like nats-py's own)."""
_JS_MAX_CONSUMERS = 10026  # JSMaximumConsumersLimitErr: the stream's or the account's limit
ANNOUNCEMENTS = "_aclbus.stored"
"""Where a stream announces what it stores under its `StreamSpec.announce` pattern (headers
only, by JetStream's RePublish): a message stored on ``S`` is announced on
``_aclbus.stored.S``. A lazy subscription listens there until its consumer is made."""


def announcement_subject(subject: str) -> str:
    """Where a stream announces the messages it stores on ``subject`` (or a pattern)."""
    return f"{ANNOUNCEMENTS}.{subject}"


def _republish(pattern: str) -> api.RePublish:
    """The RePublish that announces ``pattern``'s messages on `announcement_subject`."""
    tokens, wildcard = [], 0
    for token in pattern.split("."):
        if token == "*":
            wildcard += 1
            token = f"{{{{wildcard({wildcard})}}}}"
        tokens.append(token)
    return api.RePublish(
        src=pattern, dest=announcement_subject(".".join(tokens)), headers_only=True
    )


_REPLY_WINDOW = 4096
"""PubAcks and replies one connection waits for at once; further callers wait for room (the
bounded window of pipelined publishes; nats-py's ``publish_async`` allows 4000)."""
_STATUS = "Status"
_NO_RESPONDERS_STATUS = "503"


class _NoMessage(Exception):
    """JetStream has no message at the sequence asked for (or none after it)."""


async def _hand_back(received: Received) -> None:
    """Give a delivery that no handler will see back to JetStream, for another consumer now.

    (A core message cannot be handed back: it is dropped, as ``at_most_once`` allows.)
    """
    if received.mode is DeliveryMode.AT_LEAST_ONCE and received.settled is None:
        with contextlib.suppress(Exception):
            await received.nack()


_DRAIN_TIMEOUT = 5.0
"""Seconds an unsubscribe waits for nats-py to hand back what it had queued."""


def _expire(future: asyncio.Future[Msg]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class _ReplyInbox:
    """One wildcard inbox subscription for every PubAck and reply the backend waits for.

    nats-py's ``request`` shares one inbox too, but waits with ``wait_for`` (a task and a
    timer per call), and the permission guard wrapped each call in another task. Here a call
    is one future in a dict and one timer: its reply resolves it, and the rare events (a
    permission violation, a reconnection) scan the dict, so no call registers for them.

    Args:
        nc: The connection.
        window: How many calls may wait for their reply at once.
    """

    def __init__(self, nc: Client, window: int) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox() + "."
        self._cut = len(self._prefix)
        self._tokens = itertools.count(1)
        # token -> (future, subject, retried after a reconnection)
        self._pending: dict[str, tuple[asyncio.Future[Msg], str, bool]] = {}
        self._room = asyncio.Semaphore(window)

    async def start(self) -> None:
        """Subscribe to the inbox (nats-py subscribes again after each reconnection)."""
        await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        waiting = self._pending.get(msg.subject[self._cut :])
        if waiting is not None and not waiting[0].done():
            waiting[0].set_result(msg)

    async def ask(
        self,
        subject: str,
        body: bytes,
        headers: dict[str, str] | None,
        timeout: float,
        *,
        retry: bool = False,
    ) -> Msg:
        """Publish to ``subject`` with a reply subject of this inbox; the one reply.

        Args:
            subject: Where to publish.
            body: The body.
            headers: The headers (not copied, not changed).
            timeout: Seconds to wait for room and for the reply.
            retry: Fail with `Interrupted` at a reconnection, to be sent again.

        Raises:
            TimeoutError: No reply in time.
            Interrupted: ``retry`` and the connection was re-established meanwhile.
            PermissionDenied: The server refused the publish.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._room.locked():
            await asyncio.wait_for(self._room.acquire(), timeout)
        else:
            await self._room.acquire()  # returns at once: no task, no timer
        token = str(next(self._tokens))
        future: asyncio.Future[Msg] = loop.create_future()
        self._pending[token] = (future, subject, retry)
        timer = loop.call_at(deadline, _expire, future)
        try:
            await self._nc.publish(subject, body, reply=self._prefix + token, headers=headers)
            return await future
        finally:
            timer.cancel()
            del self._pending[token]
            self._room.release()

    def deny(self, op: str, subject: str) -> None:
        """Fail the calls that published to ``subject`` (lower case) with `PermissionDenied`."""
        if op != "publish":
            return
        for future, target, _ in list(self._pending.values()):
            if not future.done() and target.lower() == subject:
                future.set_exception(PermissionDenied("publish", target))

    def interrupt(self) -> None:
        """Fail the calls to send again after a reconnection with `Interrupted`."""
        for future, target, retry in list(self._pending.values()):
            if retry and not future.done():
                future.set_exception(Interrupted(f"publish on {target!r}"))

    def close(self) -> None:
        """Fail every call still waiting: no reply can come any more."""
        for future, target, _ in list(self._pending.values()):
            if not future.done():
                future.set_exception(
                    BackendClosed(f"the NATS connection closed before {target!r} answered")
                )


class NatsBackend(Backend):
    """aclbus over NATS: core NATS for ``at_most_once``, JetStream for ``at_least_once``.

    Args:
        settings: The bus' settings.
        nats: Connection settings; None reads ``ACLBUS_NATS__*`` / ``[nats]``.
        server: An embedded server to use (and stop on close) instead of starting one when
            ``nats.servers`` is empty.
    """

    name = "nats"
    capabilities = Capabilities(
        persistent=True,
        ack=True,
        nack_delay=True,
        term=True,
        in_progress=True,
        max_deliver=True,
        backoff=True,
        dedup_window=True,
        ordered=True,
        ttl=True,
        kv=True,
        request_reply=True,
        queue_groups=True,
        wildcards=True,
        durable=True,
    )

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        nats: NatsSettings | None = None,
        server: EmbeddedServer | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.nats_settings = nats if nats is not None else NatsSettings()
        if server is None and not self.nats_settings.servers:
            from aclbus_nats.server import EmbeddedServer
            from aclbus_nats.server.process import reserve_port

            store = self.nats_settings.embedded_store_dir
            if store is None and self.settings.data_dir is not None:
                store = self.settings.data_dir / "nats"
            server = EmbeddedServer(store_dir=store, port=reserve_port())
            self._owns_server = True
        else:
            self._owns_server = False
        self._server = server
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._subscriptions: set[NatsSubscription] = set()
        self._streams: dict[str, StreamSpec] = {}
        self._announced: dict[str, str] = {}  # stream -> the pattern it announces
        self._rechecks: set[asyncio.Task[None]] = set()
        self._server_version: tuple[int, int, int] = (0, 0, 0)
        self._permissions = PermissionWatch()
        self._closing = False
        self._last_error: Exception | None = None
        self._inbox: _ReplyInbox | None = None
        self._permissions.listen(self._on_violation)
        # The embedded server's ports are picked now, so the broker knows its URL from the
        # start (FastStream reads its servers when the broker is made).
        self.broker = NatsBroker(
            servers=self.nats_settings.servers or [server.url if server else ""],
            **self._connect_options(),
        )

    # -- connection ------------------------------------------------------------------------

    def _connect_options(self) -> dict[str, Any]:
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
        security = self._security()
        if security is not None:
            options["security"] = security
        return options

    def _security(self) -> NatsSecurity | None:
        """Credentials and TLS as FastStream's ``security`` object.

        FastStream 0.7's `NatsBroker` takes no ``user``/``password``/``tls`` arguments: one
        security object carries the credentials and the TLS context together.
        """
        n = self.nats_settings
        methods = [
            name
            for name, value in (
                ("user", n.user),
                ("token", n.token),
                ("creds_file", n.creds_file),
                ("nkey_seed_file", n.nkey_seed_file),
            )
            if value is not None
        ]
        if len(methods) > 1:
            raise ConfigurationError(
                f"ACLBUS_NATS__ sets {', '.join(methods)}: choose one way to authenticate"
            )
        context = None
        if n.tls_ca_file or n.tls_cert_file:
            import ssl

            context = ssl.create_default_context(
                cafile=str(n.tls_ca_file) if n.tls_ca_file else None
            )
            if n.tls_cert_file:
                context.load_cert_chain(
                    str(n.tls_cert_file), str(n.tls_key_file) if n.tls_key_file else None
                )
        try:
            if n.user is not None:
                password = n.password.get_secret_value() if n.password else ""
                return NatsUserPassword(n.user, password, ssl_context=context)
            if n.token is not None:
                return NatsToken(n.token.get_secret_value(), ssl_context=context)
            if n.creds_file is not None:
                return NatsCredentials.from_file(n.creds_file, ssl_context=context)
            if n.nkey_seed_file is not None:
                return NatsNKey.from_file(n.nkey_seed_file, ssl_context=context)
        except ImportError as exc:  # NKey and creds files need the nkeys package
            raise ConfigurationError(f"{methods[0]} needs the nkeys package: {exc}") from None
        return NatsSecurity(ssl_context=context) if context is not None else None

    async def _on_error(self, exc: Exception) -> None:
        if self._permissions.observe(exc):
            return
        self._last_error = exc
        log.warning("nats: %s", exc)

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
        if self._inbox is not None:
            # A server that went away never sends the PubAck of what it got just before:
            # publishes with a Nats-Msg-Id are sent again (and stored once).
            self._inbox.interrupt()
        # What was announced while the connection was down never came: lazy subscriptions
        # look again (nats-py has sent their SUBs again before calling us).
        waiting = [sub for sub in self._subscriptions if sub.listening]
        if waiting:
            task = asyncio.create_task(self._look_again(waiting), name="aclbus-lazy-recheck")
            self._rechecks.add(task)
            task.add_done_callback(self._rechecks.discard)

    async def _look_again(self, waiting: list[NatsSubscription]) -> None:
        for sub in waiting:
            try:
                await sub.look_again()
            except Exception as exc:  # the connection went again: the next reconnection retries
                log.warning("nats: lazy subscription to %s: %s", sub.spec.subject, exc)

    @property
    def connected(self) -> bool:
        """True while connected to a server."""
        return self._nc is not None and self._nc.is_connected

    async def connect(self) -> None:
        """Start the embedded server if none is configured, then connect."""
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
            self._nc = await asyncio.wait_for(self.broker.connect(), limit)
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
        self._js = self._nc.jetstream(timeout=self.nats_settings.publish_timeout)
        self._server_version = _version(self._nc)
        self._inbox = _ReplyInbox(self._nc, _REPLY_WINDOW)
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

    async def _start_embedded(self) -> None:
        if self._server is not None and self._owns_server and not self._server.running:
            await self._server.astart()

    async def _stop_embedded(self) -> None:
        if self._server is not None and self._owns_server:
            await self._server.astop()

    async def close(self) -> None:
        """Stop every subscription, drain the connection, stop an embedded server."""
        self._closing = True
        for sub in list(self._subscriptions):
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
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
        self._closing = False

    def _conn(self) -> tuple[Client, JetStreamContext]:
        if self._nc is None or self._js is None:
            raise BackendClosed("the NATS backend is not connected")
        return self._nc, self._js

    def _replies(self) -> tuple[Client, _ReplyInbox]:
        if self._nc is None or self._inbox is None:
            raise BackendClosed("the NATS backend is not connected")
        return self._nc, self._inbox

    def make_app(self, bus: Any) -> Any:
        """A FastStream app on this backend's broker that runs ``bus`` (see `Bus.app`)."""
        from aclbus_nats.app import make_app

        return make_app(self, bus)

    def sibling(self) -> NatsBackend:
        """A backend with its own connection to the same server (an embedded one included)."""
        servers = self.nats_settings.servers or ([self._server.url] if self._server else [])
        nats = self.nats_settings.model_copy(update={"servers": servers})
        return NatsBackend(self.settings, nats=nats)

    @property
    def max_payload(self) -> int | None:
        """The server's ``max_payload``."""
        return self._nc.max_payload if self._nc is not None else None

    @property
    def server_version(self) -> tuple[int, int, int]:
        """The connected server's version."""
        return self._server_version

    @property
    def server(self) -> EmbeddedServer | None:
        """The embedded server, when the backend runs one."""
        return self._server

    async def stream_usage(self, stream: str) -> StreamUsage:
        """The consumers of ``stream`` against its ``max_consumers`` (one STREAM.INFO).

        Raises:
            ConfigurationError: No such stream.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        _, js = self._conn()
        await self._check_stream_name(stream)
        info = await self._stored_call(stream, js.stream_info(stream))
        limit = info.config.max_consumers
        return StreamUsage(
            stream, info.state.consumer_count, limit if limit is not None and limit > 0 else None
        )

    async def describe(self) -> dict[str, Any]:
        """Server version, limits, JetStream account usage, consumers of aclbus' streams."""
        nc, js = self._conn()
        info = await js.account_info()
        streams: dict[str, Any] = {}
        for name in sorted(self._streams):
            with contextlib.suppress(ACLBusError):  # deleted meanwhile: nothing to report
                usage = await self.stream_usage(name)
                streams[name] = {"consumers": usage.consumers, "max_consumers": usage.max_consumers}
        return {
            "backend": self.name,
            "servers": self.nats_settings.masked_servers()
            or [self._server.url if self._server else "?"],
            "connected_url": nc.connected_url.netloc if nc.connected_url else None,
            "server_version": ".".join(map(str, self._server_version)),
            "max_payload": nc.max_payload,
            "jetstream": {
                "streams": info.streams,
                "consumers": info.consumers,
                "memory": info.memory,
                "storage": info.storage,
                "max_consumers": info.limits.max_consumers,  # the account's; -1: none
            },
            "streams": streams,
            "embedded": self._server is not None,
        }

    # -- provisioning ----------------------------------------------------------------------

    async def provision(self, spec: StreamSpec | KVSpec) -> None:
        """Create or update a stream or KV bucket, then check that it really is there."""
        _, js = self._conn()
        if isinstance(spec, KVSpec):
            await self._provision_kv(js, spec)
            return
        config = api.StreamConfig(
            name=spec.name,
            subjects=list(spec.subjects),
            max_age=spec.max_age,
            max_bytes=spec.max_bytes or -1,
            max_msgs=spec.max_msgs or -1,
            max_msg_size=spec.max_msg_size + NATS_HEADER_ALLOWANCE if spec.max_msg_size else -1,
            duplicate_window=spec.duplicate_window,
            storage=api.StorageType.FILE if spec.storage == "file" else api.StorageType.MEMORY,
            num_replicas=spec.replicas,
            discard=api.DiscardPolicy.NEW if spec.discard == "new" else api.DiscardPolicy.OLD,
            allow_msg_ttl=spec.allow_msg_ttl and self._server_version[:2] >= MIN_TTL_SERVER,
            # -1 is "no limit of its own": nats-server 2.15 then stops it at 1,000 consumers.
            max_consumers=spec.max_consumers or -1,
            republish=_republish(spec.announce) if spec.announce else None,
        )
        if spec.announce and not any(covers(s, spec.announce) for s in spec.subjects):
            raise ConfigurationError(
                f"cannot create stream {spec.name!r}: announce={spec.announce!r} is not within "
                f"its subjects {list(spec.subjects)}"
            )
        try:
            await js.add_stream(config)
        except js_errors.BadRequestError as exc:
            if exc.err_code != 10058:  # stream name already in use (with another config)
                hint = await self._overlap(js, spec) if exc.err_code == 10065 else ""
                raise ConfigurationError(
                    f"cannot create stream {spec.name!r}: {exc.description} "
                    f"(code {exc.err_code}){hint}"
                ) from exc
            try:
                await js.update_stream(config)
            except js_errors.APIError as exc2:
                raise ConfigurationError(
                    f"stream {spec.name!r} exists with a configuration that cannot be changed "
                    f"to the new one: {exc2.description} (code {exc2.err_code}); delete the "
                    "stream or keep its old settings (storage and some limits are fixed)"
                ) from exc2
        except js_errors.APIError as exc:
            raise ConfigurationError(
                f"cannot create stream {spec.name!r}: {exc.description} (code {exc.err_code})"
            ) from exc
        info = await js.stream_info(spec.name)
        missing = set(spec.subjects) - set(info.config.subjects or ())
        if missing:
            raise ConfigurationError(
                f"stream {spec.name!r} does not capture {sorted(missing)} after provisioning"
            )
        self._streams[spec.name] = spec
        # Lazy subscriptions rely on the announcements: only where the server kept them.
        republish = info.config.republish
        if spec.announce and republish is not None and republish.src == spec.announce:
            self._announced[spec.name] = spec.announce
        else:
            self._announced.pop(spec.name, None)

    async def _overlap(self, js: JetStreamContext, spec: StreamSpec) -> str:
        """Name the stream that already captures ``spec``'s subjects, for the error."""
        for subject in spec.subjects:
            try:
                other = await js.find_stream_name_by_subject(subject)
            except Exception:  # only a hint: the server's own reason is in the error already
                continue
            if other != spec.name:
                return (
                    f": stream {other!r} already captures {subject!r}. Delete that stream, or "
                    "give this deployment another ACLBUS_SUBJECT_PREFIX"
                )
        return ""

    async def _provision_kv(self, js: JetStreamContext, spec: KVSpec) -> None:
        if spec.history > KV_MAX_HISTORY:  # nats-py refuses it with an error of its own
            raise ConfigurationError(
                f"KV bucket {spec.bucket!r}: history={spec.history} is over JetStream's limit; "
                f"a bucket keeps at most {KV_MAX_HISTORY} revisions per key"
            )
        config = api.KeyValueConfig(
            bucket=spec.bucket,
            history=spec.history,
            ttl=spec.ttl,
            replicas=spec.replicas,
            storage=_storage_type(spec.storage),
        )
        try:
            await js.create_key_value(config)
        except js_errors.APIError as exc:
            # 10058: the bucket exists with another config. The server checks some settings
            # (replicas on a single server) before existence, so ask when it says otherwise.
            if exc.err_code != 10058 and not await self._bucket_exists(js, spec.bucket):
                raise ConfigurationError(
                    f"cannot create KV bucket {spec.bucket!r}: {exc.description} "
                    f"(code {exc.err_code})"
                ) from exc
            await self._update_kv(js, spec)
        await js.key_value(spec.bucket)

    async def _bucket_exists(self, js: JetStreamContext, bucket: str) -> bool:
        try:
            await js.stream_info(f"KV_{bucket}")
        except js_errors.NotFoundError:
            return False
        return True

    async def _update_kv(self, js: JetStreamContext, spec: KVSpec) -> None:
        """Change an existing bucket to ``spec``: what JetStream can change, in place.

        A bucket is the stream ``KV_<bucket>``, and nats-py has no update for buckets, so
        the stream's limits are changed as nats-py would have made them for ``spec``: TTL is
        ``max_age``, history the per-subject limit, and the duplicate window is the TTL when
        that is shorter than 2 minutes (JetStream refuses a window longer than ``max_age``).
        Storage cannot change; replicas only on a cluster.

        Raises:
            ConfigurationError: A change JetStream cannot make, naming the bucket, each
                setting with its old and new value, and the server's reason.
        """
        current = (await js.stream_info(f"KV_{spec.bucket}")).config
        old_storage = _storage_name(current.storage)
        if old_storage != spec.storage:
            raise ConfigurationError(
                f"KV bucket {spec.bucket!r} exists with storage {old_storage!r}, which cannot "
                f"be changed to {spec.storage!r} (JetStream keeps a stream's storage for its "
                f"life): delete the bucket (and its entries) first, or keep storage "
                f"{old_storage!r}"
            )
        ttl = spec.ttl or 0.0
        wanted = {
            "max_age": ttl,
            "max_msgs_per_subject": spec.history,
            "num_replicas": spec.replicas,
            "duplicate_window": min(ttl, KV_DUPLICATE_WINDOW) if ttl else KV_DUPLICATE_WINDOW,
        }
        changed = {
            k: (getattr(current, k), v) for k, v in wanted.items() if getattr(current, k) != v
        }
        if not changed:
            return
        for key, (_, value) in changed.items():
            setattr(current, key, value)
        try:
            await js.update_stream(current)
        except js_errors.APIError as exc:
            changes = ", ".join(
                f"{_KV_SETTING[key]} {_kv_value(key, old)} -> {_kv_value(key, new)}"
                for key, (old, new) in changed.items()
                if key in _KV_SETTING
            )
            raise ConfigurationError(
                f"KV bucket {spec.bucket!r} exists and JetStream cannot change it "
                f"({changes}): {exc.description} (code {exc.err_code}); keep its old "
                "settings, or delete the bucket (and its entries) to make it anew"
            ) from exc

    # -- publishing ------------------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE,
        msg_id: str | None = None,
        ttl: float | None = None,
        reply: str | None = None,
    ) -> PublishAck:
        """Publish on core NATS (``at_most_once``) or to JetStream, waiting for its PubAck.

        JetStream publishes are pipelined: each waits for its own PubAck on the connection's
        shared reply inbox while others are sent, up to a window of pending PubAcks.

        Raises:
            MessageTooLarge: Over the server's ``max_payload`` (before sending), or over the
                stream's ``max_msg_size``.
            HeadersTooLarge: A persistent message whose header block, ``Nats-*`` headers
                included, is over `JETSTREAM_MAX_HEADER_BYTES` (before sending).
            NoStream: ``at_least_once`` to a subject no stream captures.
            PublishTimeout: No PubAck within ``publish_timeout`` (maybe stored).
            StreamFull: A stream, the account or the server is out of storage.
            PermissionDenied: The server forbids this connection to publish there.
            BackendClosed: Not connected, or the reconnect buffer is full.
        """
        nc, inbox = self._replies()
        persistent = mode is not DeliveryMode.AT_MOST_ONCE
        nats_ttl = None
        if persistent and ttl is not None and self._server_version[:2] >= MIN_TTL_SERVER:
            nats_ttl = f"{max(1, int(ttl + 0.999))}s"
        if (persistent and msg_id is not None) or nats_ttl or not isinstance(headers, dict):
            hdrs = dict(headers)  # the caller's headers stay as they were
            if persistent and msg_id is not None:
                hdrs["Nats-Msg-Id"] = msg_id
            if nats_ttl:
                hdrs["Nats-TTL"] = nats_ttl
        else:
            hdrs = headers  # only read, by nats-py's publish
        size = encoded_size(hdrs, body)  # what the server counts: Nats-* headers included
        if size > nc.max_payload:
            raise MessageTooLarge(size, nc.max_payload, "message (the server's max_payload)")
        if persistent and size - len(body) > JETSTREAM_MAX_HEADER_BYTES:
            raise HeadersTooLarge(size - len(body), JETSTREAM_MAX_HEADER_BYTES, subject)
        if not persistent:
            try:
                await nc.publish(subject, body, reply=reply or "", headers=hdrs)
            except _NOT_SENT as exc:
                raise _not_sent(exc, "publish", subject) from None
            return PublishAck()
        timeout = self.nats_settings.publish_timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = await inbox.ask(
                    subject,
                    body,
                    hdrs,
                    max(deadline - time.monotonic(), 0.01),
                    retry=msg_id is not None,
                )
            except _NOT_SENT as exc:
                raise _not_sent(exc, "publish", subject) from None
            except Interrupted:
                continue  # sent again: the same Nats-Msg-Id is stored once
            except TimeoutError:
                raise PublishTimeout(subject, timeout) from None
            if not _no_responders(response):
                break
            # Nobody stored it: no stream captures the subject, or JetStream is not ready
            # (a server that restarts, a stream leader being elected). A subject of a stream
            # this backend provisioned is tried again until the publish timeout.
            if self._stream_of(subject) is None:
                raise NoStream(subject)
            if time.monotonic() + _NO_RESPONDERS_PAUSE >= deadline:
                raise PublishTimeout(subject, timeout)
            await asyncio.sleep(_NO_RESPONDERS_PAUSE)
        ack = orjson.loads(response.data)
        error = ack.get("error")
        if error:
            code = error.get("err_code")
            if code in _JS_MSG_SIZE_ERRORS:
                raise MessageTooLarge(
                    size, self._limit_of(subject) or size - 1, "message (the stream's max_msg_size)"
                )
            if code in _JS_STORE_ERRORS:
                raise StreamFull(subject, f"{error.get('description')} (JetStream code {code})")
            raise ACLBusError(
                f"JetStream refused the publish to {subject!r}: {error.get('description')} "
                f"(code {code})"
            )
        return PublishAck(ack.get("stream"), ack.get("seq"), bool(ack.get("duplicate")))

    def _limit_of(self, subject: str) -> int | None:
        spec = self._stream_of(subject)
        if spec is None or spec.max_msg_size is None:
            return None
        return spec.max_msg_size + NATS_HEADER_ALLOWANCE

    def _stream_covering(self, pattern: str) -> StreamSpec | None:
        """The provisioned stream that stores every subject matching ``pattern``, or None."""
        for spec in self._streams.values():
            if any(covers(p, pattern) for p in spec.subjects):
                return spec
        return None

    def _stream_of(self, subject: str) -> StreamSpec | None:
        for spec in self._streams.values():
            if any(subject_matches(p, subject) for p in spec.subjects):
                return spec
        return None

    async def request(
        self, subject: str, headers: Mapping[str, str], body: bytes, *, timeout: float
    ) -> Reply:
        """Core NATS request: NoResponders at once when nobody listens."""
        _, inbox = self._replies()
        hdrs = headers if isinstance(headers, dict) else dict(headers)
        try:
            msg = await inbox.ask(subject, body, hdrs, timeout)
        except _NOT_SENT as exc:
            raise _not_sent(exc, "request", subject) from None
        except TimeoutError:
            raise RequestTimeout(subject, timeout) from None
        if _no_responders(msg):
            raise NoResponders(subject)
        return Reply(msg.subject, msg.headers if msg.headers is not None else {}, msg.data)

    # -- subscribing -----------------------------------------------------------------------

    async def subscribe(self, spec: SubscriptionSpec, handler: DeliveryHandler) -> Subscription:
        """Subscribe on core NATS, or bind a push consumer on JetStream with manual acks.

        A lazy subscription (`SubscriptionSpec.lazy`) to a subject its stream announces
        listens to the announcements instead, and makes its consumer once the subject has a
        message: at once if one is stored already, else when the first one is announced.

        Raises:
            ConsumerLimitReached: The stream (or the JetStream account) has as many
                consumers as it may.
            NoStream: ``at_least_once`` on a subject no stream captures.
            PermissionDenied: The server forbids the subscription or the JetStream API.
            ConfigurationError: Any other refusal of the consumer, with the server's reason.
        """
        nc, _ = self._conn()
        sub = NatsSubscription(self, spec, handler)
        if spec.mode is DeliveryMode.AT_MOST_ONCE:
            sub.nats_sub = await nc.subscribe(
                spec.subject, queue=spec.queue or "", cb=sub.on_core_message
            )
        elif spec.lazy and (stream := self._announcing(spec)) is not None:
            if spec.deliver != "all":
                # The first message is stored before the consumer exists: "new" skips it.
                raise ConfigurationError(
                    f"subscription to {spec.subject!r}: a lazy subscription delivers what is "
                    "stored: deliver must be 'all'"
                )
            # Listening before looking: the SUB reaches the server before the look, so a
            # message stored after the look is announced to us.
            try:
                await sub.listen(stream, announcement_subject(spec.subject))
                if await self._holds(stream, spec.subject):
                    await sub.bind()
            except BaseException:
                await sub.unsubscribe()
                raise
        else:
            sub.nats_sub = await self._consume(spec, sub)
        sub.start_workers()
        self._subscriptions.add(sub)
        # nats-py writes a flush's PING straight to the socket, ahead of the SUB still in its
        # buffer, so the first PONG may come before the server's -ERR for the SUB; the second
        # round trip comes after it.
        await nc.flush()
        await nc.flush()
        try:
            self._permissions.check_subscribe(spec.subject)
            if sub.listening:
                self._permissions.check_subscribe(announcement_subject(spec.subject))
        except PermissionDenied:
            await sub.unsubscribe()  # the client would otherwise keep a dead subscription
            raise
        return sub

    def _announcing(self, spec: SubscriptionSpec) -> str | None:
        """The stream that announces ``spec``'s subject to a lazy durable, or None."""
        if spec.durable is None:
            return None
        for stream, pattern in self._announced.items():
            if covers(pattern, spec.subject):
                return stream
        return None

    async def _holds(self, stream: str, subject: str) -> bool:
        """Whether ``stream`` stores a message on ``subject`` (one request to its leader)."""
        _, js = self._conn()
        try:
            await self._stored_call(stream, js.get_msg(stream, 1, subject=subject, next=True))
        except _NoMessage:
            return False
        return True

    async def _consume(self, spec: SubscriptionSpec, sub: NatsSubscription) -> Any:
        """Make (or bind) the JetStream push consumer of ``spec`` for ``sub``."""
        _, js = self._conn()
        durable = spec.durable or spec.queue
        if spec.queue and spec.durable and spec.queue != spec.durable:
            # JetStream's deliver group is the consumer: one name for both.
            durable = spec.durable
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=spec.ack_wait,
            max_deliver=spec.max_deliver or -1,
            backoff=list(spec.backoff) or None,
            max_ack_pending=spec.max_ack_pending,
            deliver_policy=(
                api.DeliverPolicy.NEW if spec.deliver == "new" else api.DeliverPolicy.ALL
            ),
        )
        # A stream this backend provisioned spares nats-py the round trip to look it up.
        known = self._stream_covering(spec.subject)
        if durable and spec.queue and known is not None:
            # Instances of an agent may make its consumer in the same instant (a lazy lane,
            # woken in all of them by one announcement): with a deliver subject of each
            # one's own, the second creation would move the consumer to it and leave the
            # first bound to nothing. One subject per consumer makes both creations equal.
            config.deliver_subject = f"{DELIVER_PREFIX}.{known.name}.{durable}"
        try:
            # Making the consumer is a request on the JetStream API, which the server's
            # permissions may forbid: fail at once rather than after the API timeout.
            return await self._permissions.guard(
                "publish",
                "$JS.API.>",
                js.subscribe(
                    spec.subject,
                    queue=durable if spec.queue else None,
                    durable=durable,
                    stream=known.name if known is not None else None,
                    cb=sub.on_js_message,
                    manual_ack=True,
                    config=config,
                    pending_msgs_limit=max(spec.max_ack_pending * 2, 1024),
                ),
            )
        except PermissionDenied as exc:
            raise PermissionDenied("subscribe", spec.subject) from exc
        except js_errors.NotFoundError:
            raise NoStream(spec.subject) from None
        except js_errors.APIError as exc:
            if exc.err_code == _JS_MAX_CONSUMERS:
                raise await self._consumer_limit(spec.subject) from exc
            raise ConfigurationError(
                f"cannot consume {spec.subject!r} as {durable or 'an ephemeral consumer'}: "
                f"{exc.description} (code {exc.err_code})"
            ) from exc
        except js_errors.Error as exc:
            raise ConfigurationError(
                f"cannot consume {spec.subject!r} as {durable!r}: {exc}"
            ) from exc

    async def _consumer_limit(self, subject: str) -> ConsumerLimitReached:
        """The error for a consumer refused with "maximum consumers limit reached".

        The server gives that reason for the stream's limit and the account's alike: the
        stream's count against its limit tells which it was.
        """
        _, js = self._conn()
        known = self._stream_covering(subject)
        name = known.name if known is not None else "?"
        with contextlib.suppress(Exception):  # only detail: the error stands without it
            if known is None:
                name = await js.find_stream_name_by_subject(subject)
            info = await js.stream_info(name)
            limit = info.config.max_consumers
            if limit is not None and 0 < limit <= info.state.consumer_count:
                return ConsumerLimitReached(name, limit, subject)
            account = (await js.account_info()).limits.max_consumers
            return ConsumerLimitReached(
                name,
                None,
                subject,
                f"the JetStream account's limit of {account} consumers, or the server's "
                f"default for the stream ({info.state.consumer_count} consumers now)",
            )
        return ConsumerLimitReached(name, None, subject)

    async def kv(self, bucket: str) -> KeyValue:
        """The provisioned bucket ``bucket``."""
        _, js = self._conn()
        try:
            return NatsKeyValue(bucket, await js.key_value(bucket))
        except js_errors.BucketNotFoundError:
            raise ConfigurationError(
                f"KV bucket {bucket!r} does not exist: provision it with KVSpec({bucket!r})"
            ) from None

    # -- stored messages -------------------------------------------------------------------

    async def read_stream(
        self, stream: str, *, subject: str | None = None, start: int = 1, limit: int = 100
    ) -> list[StoredMessage]:
        """The stored messages of ``stream`` from sequence ``start`` on, in order.

        Each message is one ``STREAM.MSG.GET`` request for the next one at or after a
        sequence whose subject matches (``next_by_subj``), so deleted sequences and messages
        of other subjects cost nothing; the stream leader answers, so what was just
        published or deleted is seen.

        Args:
            stream: The stream's name.
            subject: Only messages whose subject matches this (wildcards allowed).
            start: The first sequence to consider (below 1: from the first).
            limit: At most this many messages (0: none).

        Raises:
            ConfigurationError: No such stream; the message names the server's streams.
            InvalidIdentifier: ``subject`` is not a valid subject filter.
            ValueError: ``limit`` is negative.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        _, js = self._conn()
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit!r}")
        await self._check_stream_name(stream)
        pattern = ">" if subject is None else check_filter(subject)
        found: list[StoredMessage] = []
        seq = max(start, 1)
        while len(found) < limit:
            try:
                raw = await self._stored_call(
                    stream, js.get_msg(stream, seq, subject=pattern, next=True)
                )
            except _NoMessage:
                break
            message = _stored(stream, raw)
            found.append(message)
            seq = message.sequence + 1
        return found

    async def get_message(self, stream: str, sequence: int) -> StoredMessage | None:
        """The message at ``sequence`` in ``stream``; None if deleted, expired or never stored.

        Raises:
            ConfigurationError: No such stream; the message names the server's streams.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        _, js = self._conn()
        await self._check_stream_name(stream)
        if sequence < 1:  # nats-py would send no sequence at all: just check the stream
            await self._stored_call(stream, js.stream_info(stream))
            return None
        try:
            raw = await self._stored_call(stream, js.get_msg(stream, sequence))
        except _NoMessage:
            return None
        return _stored(stream, raw)

    async def delete_message(self, stream: str, sequence: int) -> bool:
        """Remove the message at ``sequence``; False if it was not stored (or had expired).

        A consumer that has not delivered it yet never will; one that delivered it and waits
        for its ack forgets it (the server publishes a ``MSG_TERMINATED`` advisory).

        Raises:
            ConfigurationError: No such stream; the message names the server's streams.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        _, js = self._conn()
        await self._check_stream_name(stream)
        if sequence < 1:
            await self._stored_call(stream, js.stream_info(stream))
            return False
        try:
            return await self._stored_call(stream, js.delete_msg(stream, sequence))
        except _NoMessage:
            return False

    async def purge_stream(self, stream: str, *, subject: str | None = None) -> int:
        """Remove every stored message of ``stream`` (whose subject matches ``subject``).

        Sequences go on from where they were; consumers skip what was removed.

        nats-py's ``purge_stream`` drops the count the server answers with, so this sends the
        same ``$JS.API.STREAM.PURGE.<stream>`` request itself and reads ``purged``.

        Returns:
            How many messages were removed.

        Raises:
            ConfigurationError: No such stream; the message names the server's streams.
            InvalidIdentifier: ``subject`` is not a valid subject filter.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        nc, _ = self._conn()
        await self._check_stream_name(stream)
        payload = b"{}" if subject is None else orjson.dumps({"filter": check_filter(subject)})
        timeout = self.nats_settings.publish_timeout

        async def purge() -> int:
            msg = await nc.request(
                f"{api.DEFAULT_PREFIX}.STREAM.PURGE.{stream}", payload, timeout=timeout
            )
            answer = orjson.loads(msg.data)
            error = answer.get("error")
            if error:
                js_errors.APIError.from_error(error)  # raises the error class for its code
            return int(answer.get("purged", 0))

        return await self._stored_call(stream, purge())

    async def delete_consumer(self, stream: str, consumer: str) -> bool:
        """Delete consumer ``consumer`` of ``stream``; False if there was none.

        Raises:
            ConfigurationError: No such stream.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        _, js = self._conn()
        await self._check_stream_name(stream)

        async def delete() -> bool:
            try:
                return bool(await js.delete_consumer(stream, consumer))
            except js_errors.NotFoundError as exc:
                if exc.err_code == _JS_NO_STREAM:
                    raise
                return False

        return await self._stored_call(stream, delete())

    async def _check_stream_name(self, stream: str) -> None:
        """Raise the unknown-stream error for a name no stream can have.

        nats-py refuses such a name with a bare `ValueError`; the memory backend calls it an
        unknown stream, and so does this one.
        """
        if not stream or any(c in _INVALID_STREAM_CHARS for c in stream):
            raise await self._unknown_stream(stream)

    async def _stored_call(self, stream: str, call: Awaitable[T]) -> T:
        """Await a JetStream API request about ``stream``, with its errors as aclbus' own.

        Raises:
            _NoMessage: No message at (or after) the sequence asked for.
            ConfigurationError: No such stream.
            PermissionDenied: The server forbids the JetStream API to this connection.
            RequestTimeout: No answer within ``publish_timeout``.
            BackendClosed: The connection is closed.
            ACLBusError: Any other refusal, with the server's reason.
        """
        try:
            return await self._permissions.guard("publish", "$JS.API.>", call)
        except js_errors.APIError as exc:
            if exc.err_code == _JS_NO_STREAM:
                raise await self._unknown_stream(stream) from None
            if exc.err_code in (_JS_NO_MESSAGE, _JS_NO_SEQUENCE):
                raise _NoMessage from None
            raise ACLBusError(
                f"JetStream refused a request about stream {stream!r}: {exc.description} "
                f"(code {exc.code}, error code {exc.err_code})"
            ) from exc
        except nats_errors.NoRespondersError:
            raise ACLBusError(
                f"JetStream did not answer a request about stream {stream!r}: is JetStream "
                "enabled and the stream's leader elected?"
            ) from None
        except (nats_errors.TimeoutError, TimeoutError):
            raise RequestTimeout(
                f"{api.DEFAULT_PREFIX}.STREAM.*.{stream}", self.nats_settings.publish_timeout
            ) from None
        except nats_errors.ConnectionClosedError:
            raise BackendClosed(
                f"the NATS connection is closed; the request about stream {stream!r} was not sent"
            ) from None

    async def _unknown_stream(self, stream: str) -> ConfigurationError:
        """The error for a stream that does not exist, naming the ones that do."""
        names: list[str] = sorted(self._streams)
        if self._js is not None:
            with contextlib.suppress(Exception):  # only a hint: the error stands without it
                infos = await self._js.streams_info()
                names = sorted(i.config.name for i in infos if i.config.name)
        return ConfigurationError(
            f"no stream {stream!r} on the NATS server (streams: {', '.join(names) or 'none'})"
        )

    def _forget(self, sub: NatsSubscription) -> None:
        self._subscriptions.discard(sub)


class NatsSubscription(Subscription):
    """A subscription on core NATS or a JetStream push consumer."""

    def __init__(
        self, backend: NatsBackend, spec: SubscriptionSpec, handler: DeliveryHandler
    ) -> None:
        self.spec = spec
        self._backend = backend
        self._handler = handler
        self.nats_sub: NatsPySubscription | Any = None
        self._active = True
        self._queue: asyncio.Queue[Received] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._callers: list[asyncio.Task[Any] | None] = []  # the tasks running a handler now
        self._idle: asyncio.Event | None = None  # set when a handler returns, while unsubscribing
        # While unsubscribing, until the server has the UNSUB: deliveries kept, not handed
        # back (the server would send a handed-back delivery straight back to this very
        # subscription, one more delivery attempt each round, until max_deliver).
        self._held: list[Received] | None = None
        # A lazy subscription: its stream, the announcements it listens to until its
        # consumer is made, and the task that makes it when one comes.
        self._stream: str | None = None
        self._announcements: NatsPySubscription | None = None
        self._binding = asyncio.Lock()
        self._waking: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """False once unsubscribed or once the backend closed."""
        return self._active and self._backend.connected

    @property
    def listening(self) -> bool:
        """True while a lazy subscription waits for the first message of its subject."""
        return self._announcements is not None

    async def listen(self, stream: str, announcements: str) -> None:
        """Wait, lazily, for what ``stream`` announces on ``announcements``."""
        nc, _ = self._backend._conn()
        self._stream = stream
        self._announcements = await nc.subscribe(announcements, cb=self._on_announcement)

    async def bind(self) -> None:
        """Make (or bind) the consumer of a lazy subscription, then stop listening.

        Raises:
            ConsumerLimitReached: The stream has no room for it (it keeps listening).
        """
        async with self._binding:
            if self.nats_sub is not None or not self._active:
                return
            self.nats_sub = await self._backend._consume(self.spec, self)
            announcements, self._announcements = self._announcements, None
            if announcements is not None:
                with contextlib.suppress(Exception):
                    await announcements.unsubscribe()

    async def look_again(self) -> None:
        """Bind if the subject has a message now.

        After a reconnection: what was announced while the connection was down was lost.
        """
        if (
            self.listening
            and self._stream is not None
            and self._active
            and await self._backend._holds(self._stream, self.spec.subject)
        ):
            await self._wake()

    async def _on_announcement(self, msg: Msg) -> None:
        # nats-py runs this in the announcements' own task, which unsubscribing cancels:
        # bind from a task of its own.
        if self._waking is None or self._waking.done():
            self._waking = asyncio.create_task(self._wake(), name=f"aclbus-lazy-{msg.subject}")

    async def _wake(self) -> None:
        try:
            await self.bind()
        except ACLBusError as exc:
            # Nobody to raise it to: the message waits in the stream, and the next
            # announcement (or reconnection) tries again.
            log.error("nats: lazy subscription to %s: %s", self.spec.subject, exc)

    def start_workers(self) -> None:
        """With concurrency above 1, hand deliveries to a pool of worker tasks."""
        if self.spec.concurrency > 1:
            self._queue = asyncio.Queue(maxsize=self.spec.concurrency * 2)
            self._workers = [
                asyncio.create_task(self._work(), name=f"aclbus-nats-worker-{self.spec.subject}")
                for _ in range(self.spec.concurrency)
            ]

    async def _work(self) -> None:
        assert self._queue is not None
        while self._active:
            received = await self._queue.get()
            if self._active:  # once unsubscribed, queued deliveries are left for redelivery
                await self._call(received)

    async def _call(self, received: Received) -> None:
        caller = asyncio.current_task()
        self._callers.append(caller)
        try:
            await self._handler(received)
        except Exception:  # the bus handles its errors; this guards the subscription itself
            log.exception("nats: delivery handler failed on %s", received.subject)
        finally:
            self._callers.remove(caller)
            if self._idle is not None:
                self._idle.set()

    async def _dispatch(self, received: Received) -> None:
        if not self._active:
            if self._held is not None:
                self._held.append(received)
            else:
                await _hand_back(received)
            return
        if self._queue is not None:
            await self._queue.put(received)
        else:
            await self._call(received)

    async def on_core_message(self, msg: Msg) -> None:
        """nats-py's callback for a core NATS message.

        A status frame (``NATS/1.0 503``: the server's word to a client, or a peer's forgery
        of one) is no message: it is dropped, never handled, dead-lettered or answered.
        """
        headers = msg.headers
        if headers is None:
            headers = {}
        elif headers.__class__ is NatsHeaders and headers.status is not None:
            _drop_status_frame(msg.subject, headers.status)
            return
        await self._dispatch(CoreReceived(msg.subject, headers, msg.data, msg.reply or None))

    async def on_js_message(self, msg: Msg) -> None:
        """nats-py's callback for a JetStream delivery.

        A stored message whose header block claims a status is terminated unseen (it would
        otherwise come back after every ``ack_wait``). nats-server 2.15 drops such a block
        when it stores the message, so only another server could deliver one.
        """
        nc = self._backend._nc
        if nc is None:
            return
        headers = msg.headers if msg.headers is not None else {}
        try:
            received = JetStreamReceived(nc, msg.subject, headers, msg.data, msg.reply)
        except ValueError:
            log.warning("nats: a message on %s without a JetStream ack subject", msg.subject)
            return
        if headers.__class__ is NatsHeaders and headers.status is not None:
            _drop_status_frame(msg.subject, headers.status)
            await received.term(f"a NATS status frame ({headers.status}), not a message")
            return
        await self._dispatch(received)

    async def unsubscribe(self) -> None:
        """Stop delivery; an ephemeral consumer is deleted, a durable one keeps its place."""
        if not self._active:
            return
        self._active = False
        self._held = []
        self._backend._forget(self)
        await self._stop_listening()
        # nats-py's unsubscribe cancels the task that runs the handler: let the handlers that
        # run now finish and settle their deliveries first.
        await self._finish_handlers()
        # A worker whose handler unsubscribes ends by itself once the handler returns.
        workers = [task for task in self._workers if task is not asyncio.current_task()]
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # End the subscription before handing anything back: a delivery handed back while it
        # stands is sent straight back to it by the server, to be handed back again, one more
        # delivery attempt each round, until max_deliver dead-letters a good message.
        if self.nats_sub is not None:
            await self._stop_nats_sub()
        held, self._held = self._held or [], None
        for received in held:
            await _hand_back(received)
        while self._queue is not None and not self._queue.empty():
            await _hand_back(self._queue.get_nowait())
        if self.nats_sub is not None and (
            self.spec.mode is DeliveryMode.AT_LEAST_ONCE
            and not (self.spec.durable or self.spec.queue)
        ):
            await self._delete_ephemeral()

    async def _stop_listening(self) -> None:
        announcements, self._announcements = self._announcements, None
        if announcements is not None:
            with contextlib.suppress(Exception):
                await announcements.unsubscribe()
        # A bind under way is let finish (cancelled, it could leave a nats-py subscription
        # nobody stops); what it bound is stopped with the rest of the subscription.
        waking, self._waking = self._waking, None
        if waking is not None and waking is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await waking

    async def _stop_nats_sub(self) -> None:
        """End the nats-py subscription, keeping what was already sent to it.

        A drain (unsubscribe, a round trip, then the messages still queued in nats-py) lets
        `_dispatch` keep each of those, for `unsubscribe` to hand back once the server has the
        UNSUB: an instance that leaves does not hold messages that the others would otherwise
        get only after ``ack_wait``. A handler that
        unsubscribes its own subscription cannot wait for that queue (it is in it), so it just
        unsubscribes.
        """
        sub = self.nats_sub
        me = asyncio.current_task()
        try:
            if me is not None and me in self._callers:
                await sub.unsubscribe()
            else:
                await asyncio.wait_for(sub.drain(), _DRAIN_TIMEOUT)
        except Exception:  # a closed connection, a timeout: nothing more to hand back
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _finish_handlers(self) -> None:
        """Wait for the running handlers to return, for at most ``ack_wait`` seconds.

        A handler that unsubscribes its own subscription is not waited for.
        """
        me = asyncio.current_task()
        own = self._callers.count(me) if me is not None else 0
        deadline = time.monotonic() + self.spec.ack_wait
        while len(self._callers) > own:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning(
                    "nats: %d handler(s) on %s still running after %g s: cancelling them "
                    "(their deliveries are redelivered)",
                    len(self._callers) - own,
                    self.spec.subject,
                    self.spec.ack_wait,
                )
                break
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), left)
        self._idle = None

    async def _delete_ephemeral(self) -> None:
        # An ephemeral consumer would linger for its inactive threshold and keep messages
        # pending for nobody: delete it now.
        js = self._backend._js
        stream = getattr(self.nats_sub, "_stream", None)
        consumer = getattr(self.nats_sub, "_consumer", None)
        if js is None or not isinstance(stream, str) or not isinstance(consumer, str):
            return
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, consumer)


def _stored(stream: str, raw: api.RawStreamMsg) -> StoredMessage:
    """A message as `STREAM.MSG.GET` returns it, as a `StoredMessage`."""
    if raw.seq is None or raw.subject is None or raw.time is None:
        raise ACLBusError(f"JetStream returned an incomplete message from stream {stream!r}")
    return StoredMessage(
        stream=stream,
        sequence=raw.seq,
        subject=raw.subject,
        headers=_stored_headers(raw.hdrs),
        body=raw.data or b"",
        time=raw.time.astimezone(UTC),
    )


def _stored_headers(block: str | bytes | None) -> dict[str, str]:
    """The headers of a stored message, from the API's base64 header block.

    nats-py parses that block with the e-mail parser, which makes a non-ASCII value an
    `email.header.Header` object. It is read here as a delivery's block is
    (`read_header_block`), so a stored message has the headers its deliveries have,
    ``Nats-*`` ones included, and the same defect: what the DLQ and replay read back of a
    message with two ``ce-source`` is refused as the delivery was.
    """
    if not block:
        return {}
    headers = read_header_block(base64.b64decode(block))
    return headers if headers is not None else {}


def _drop_status_frame(subject: str, status: str) -> None:
    log.warning("nats: dropped a NATS status frame (%s) on %s: not a message", status, subject)


def _no_responders(msg: Msg) -> bool:
    """The server's "no responders" status: nobody subscribes to the request's subject."""
    return (
        not msg.data
        and msg.headers is not None
        and (msg.headers.get(_STATUS) == _NO_RESPONDERS_STATUS)
    )


def _version(nc: Client) -> tuple[int, int, int]:
    raw = str(nc._server_info.get("version", "0.0.0"))
    parts = [*raw.split("-", 1)[0].split("."), "0", "0", "0"][:3]
    try:
        return int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return (0, 0, 0)
