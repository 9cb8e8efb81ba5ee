"""Streams, KV buckets and consumers on the server: made, changed, checked, deleted.

The bus provisions what it needs at start-up (`StreamSpec`, `KVSpec`); each is made, or
changed in place when it exists with other settings, and then checked, because JetStream may
keep a stream without what was asked of it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import nats.errors as nats_errors
import nats.js.errors as js_errors
from nats.js import api

from aclbus.backend import KeyValue, KVSpec, StreamSpec, StreamUsage
from aclbus.errors import BackendClosed, ConfigurationError, RequestTimeout
from aclbus.subjects import covers
from aclbus_nats.announcements import republish
from aclbus_nats.connection import NatsConnection
from aclbus_nats.kv import NatsKeyValue
from aclbus_nats.stream_api import JS_NO_STREAM, StreamApi
from aclbus_nats.streams import NATS_HEADER_ALLOWANCE, ProvisionedStreams

if TYPE_CHECKING:
    from nats.js import JetStreamContext

__all__ = ["KV_DUPLICATE_WINDOW", "KV_MAX_HISTORY", "Provisioner"]

KV_MAX_HISTORY = 64
"""Revisions per key a JetStream KV bucket keeps at most."""
KV_DUPLICATE_WINDOW = 120.0
"""The duplicate window nats-py (like the Go client) gives a bucket whose TTL is longer."""
log = logging.getLogger("aclbus.nats")

_KV_SETTING = {"max_age": "ttl", "max_msgs_per_subject": "history", "num_replicas": "replicas"}
"""The stream settings of a bucket, by the `KVSpec` field they come from."""
_PROVISION_ATTEMPTS = 3
"""Requests to create a stream or bucket that JetStream does not answer, before giving up."""
_JS_NAME_IN_USE = 10058  # JSStreamNameExistErr: the name is taken, with another config
_JS_SUBJECT_OVERLAP = 10065  # JSStreamSubjectOverlapErr: another stream captures a subject


def _kv_value(stream_field: str, value: object) -> str:
    """A bucket's stream setting as its `KVSpec` field reads it (no TTL: ``None``)."""
    if stream_field == "max_age":
        return f"{value:g}" if isinstance(value, float) and value else "None"
    return str(value)


def _storage_type(storage: str) -> api.StorageType:
    return api.StorageType.FILE if storage == "file" else api.StorageType.MEMORY


def _storage_name(storage: api.StorageType | None) -> str:
    return "memory" if storage == api.StorageType.MEMORY else "file"


class Provisioner:
    """Makes and changes the streams and KV buckets of the bus; deletes consumers.

    Args:
        connection: The connection.
        streams: Where each stream provisioned is recorded.
        stream_api: Requests about streams, with their errors mapped.
    """

    def __init__(
        self, connection: NatsConnection, streams: ProvisionedStreams, stream_api: StreamApi
    ) -> None:
        self._connection = connection
        self._streams = streams
        self._api = stream_api

    async def provision(self, spec: StreamSpec | KVSpec) -> None:
        """Create or update a stream or KV bucket, then check that it really is there.

        Raises:
            ConfigurationError: The server refused it, or kept it without a subject of it.
            RequestTimeout: JetStream did not answer, three times over (a stream leader or
                the meta leader being elected, an overloaded server).
            BackendClosed: Not connected.
        """
        name = spec.bucket if isinstance(spec, KVSpec) else spec.name
        try:
            # Creating (or updating to the same config) is idempotent, so a request lost in a
            # leader election is asked again, a bounded number of times: an election takes
            # longer than one JetStream API timeout (docs/reliability.md, "Node loss").
            for attempt in range(_PROVISION_ATTEMPTS):
                try:
                    await self._provision(spec)
                    return
                except (nats_errors.TimeoutError, TimeoutError):
                    if attempt == _PROVISION_ATTEMPTS - 1:
                        raise
                    log.warning("nats: provisioning %s got no answer; asking again", name)
        except (nats_errors.TimeoutError, TimeoutError):
            # nats-py's own timeout would reach the caller untyped (a traceback in the CLI).
            raise RequestTimeout(
                f"$JS.API.STREAM.CREATE.{name}", self._connection.nats_settings.publish_timeout
            ) from None
        except nats_errors.NoRespondersError:
            raise BackendClosed(
                f"JetStream did not answer the creation of {name!r}: is JetStream enabled "
                "on the server, and its meta leader elected?"
            ) from None

    async def _provision(self, spec: StreamSpec | KVSpec) -> None:
        _, js = self._connection.require()
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
            allow_msg_ttl=spec.allow_msg_ttl and self._connection.msg_ttl,
            # -1 is "no limit of its own": nats-server 2.15 then stops it at 1,000 consumers.
            max_consumers=spec.max_consumers or -1,
            republish=republish(spec.announce) if spec.announce else None,
        )
        if spec.announce and not any(covers(s, spec.announce) for s in spec.subjects):
            raise ConfigurationError(
                f"cannot create stream {spec.name!r}: announce={spec.announce!r} is not within "
                f"its subjects {list(spec.subjects)}"
            )
        try:
            await js.add_stream(config)
        except js_errors.BadRequestError as exc:
            if exc.err_code != _JS_NAME_IN_USE:
                hint = await self._overlap(js, spec) if exc.err_code == _JS_SUBJECT_OVERLAP else ""
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
        # Lazy subscriptions rely on the announcements: only where the server kept them.
        kept = info.config.republish
        self._streams.add(spec, announced=kept is not None and kept.src == spec.announce)

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
            # The bucket exists with another config. The server checks some settings
            # (replicas on a single server) before existence, so ask when it says otherwise.
            if exc.err_code != _JS_NAME_IN_USE and not await self._bucket_exists(js, spec.bucket):
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

    async def kv(self, bucket: str) -> KeyValue:
        """The provisioned bucket ``bucket``.

        Raises:
            ConfigurationError: No such bucket.
            BackendClosed: Not connected.
        """
        _, js = self._connection.require()
        try:
            # the JetStream API's own timeout (the context's) bounds a keys() read too
            timeout = self._connection.nats_settings.publish_timeout
            return NatsKeyValue(bucket, await js.key_value(bucket), js, timeout)
        except js_errors.BucketNotFoundError:
            raise ConfigurationError(
                f"KV bucket {bucket!r} does not exist: provision it with KVSpec({bucket!r})"
            ) from None

    async def stream_usage(self, stream: str) -> StreamUsage:
        """The consumers of ``stream`` against its ``max_consumers`` (one STREAM.INFO).

        Raises:
            ConfigurationError: No such stream.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        _, js = self._connection.require()
        await self._api.check_name(stream)
        info = await self._api.call(stream, js.stream_info(stream))
        limit = info.config.max_consumers
        return StreamUsage(
            stream, info.state.consumer_count, limit if limit is not None and limit > 0 else None
        )

    async def delete_consumer(self, stream: str, consumer: str) -> bool:
        """Delete consumer ``consumer`` of ``stream``; False if there was none.

        Raises:
            ConfigurationError: No such stream.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        _, js = self._connection.require()
        await self._api.check_name(stream)

        async def delete() -> bool:
            try:
                return bool(await js.delete_consumer(stream, consumer))
            except js_errors.NotFoundError as exc:
                if exc.err_code == JS_NO_STREAM:
                    raise
                return False

        return await self._api.call(stream, delete())
