"""The exception hierarchy of aclbus: every error aclbus raises derives from `ACLBusError`.

Each error says what was wrong, with the offending value (secrets masked) and, where there is
one, what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ACLBusError",
    "ACLDecodeError",
    "AuthenticationError",
    "BackendClosed",
    "CapabilityError",
    "ConfigurationError",
    "ConsumerLimitReached",
    "HeadersTooLarge",
    "HopLimitExceeded",
    "InvalidIdentifier",
    "InvalidPayload",
    "MalformedHeaders",
    "MessageTooLarge",
    "NoResponders",
    "NoStream",
    "PermissionDenied",
    "PluginError",
    "PublishTimeout",
    "RequestTimeout",
    "StreamFull",
    "TLSError",
    "UnknownBackend",
    "UnsupportedVersion",
]


def _seq(value: object) -> tuple[object, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else ()


def _show(value: object, limit: int = 80) -> str:
    """Quote a bad value for an error message, cut so that a huge input stays readable."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ACLBusError(Exception):
    """Root of every error raised by aclbus."""


class ConfigurationError(ACLBusError, ValueError):
    """Settings or arguments that are invalid or cannot work together."""


class ConsumerLimitReached(ConfigurationError):
    """A stream refused one more consumer: it has as many as its ``max_consumers`` allows.

    Attributes:
        stream: The stream.
        limit: Its consumer limit, or None when the limit that was hit is not the stream's
            own (the broker's account limit, or its default for streams without one).
        subject: The subject of the subscription that was refused.
    """

    def __init__(self, stream: str, limit: int | None, subject: str, detail: str = "") -> None:
        self.stream = stream
        self.limit = limit
        self.subject = subject
        what = f"its limit of {limit} consumers" if limit is not None else "a consumer limit"
        super().__init__(
            f"stream {stream!r} has reached {what}: the subscription to {subject!r} cannot get "
            f"one more{f' ({detail})' if detail else ''}. Raise ACLBUS_STREAMS__MAX_CONSUMERS"
            f"{f' (now {limit})' if limit is not None else ''} and start the bus again (the "
            "stream is updated in place), or delete consumers nobody uses; each agent takes "
            "one consumer on the inbox stream and one on the broadcast stream, and "
            "`aclbus doctor` shows how many are left"
        )


class ACLDecodeError(ACLBusError, ValueError):
    """A message on the wire (headers or body) that is not a valid ACL message.

    Attributes:
        field: The header or field that is wrong (``"ce-id"``, ``"acl-priority"``, ``"body"``).
        problem: What is wrong with it, in words.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class MalformedHeaders(ACLDecodeError):
    """A header block that breaks the rules of the block itself (docs/wire-format.md, 3).

    A header of the envelope (``ce-*``, ``acl-*``, ``aclbus-*``, ``content-type``) given more
    than once in any mix of cases, another header given twice with different values, a name
    that is not an RFC 7230 token (not ASCII, a space, a control character), a line that is
    no header. Such a message cannot be read one way only, so it is refused as a whole and
    its sender, which its headers cannot name for sure, is not taken at its word.
    """


class UnsupportedVersion(ACLDecodeError):
    """A message whose ``acl-version`` major number this library does not speak."""

    def __init__(self, version: str, supported: str) -> None:
        self.version = version
        self.supported = supported
        super().__init__(
            "acl-version",
            f"major version of {version!r} is not supported (this library speaks {supported}); "
            "upgrade aclbus to read it",
        )


class InvalidIdentifier(ACLBusError, ValueError):
    """An agent, group or topic id that is not a safe subject token.

    Attributes:
        kind: What the id names (``"agent id"``, ``"group"``, ``"topic"``).
        value: The offending value.
    """

    def __init__(self, kind: str, value: object, reason: str) -> None:
        self.kind = kind
        self.value = value
        super().__init__(f"invalid {kind} {_show(value)}: {reason}")


class MessageTooLarge(ACLBusError, ValueError):
    """An encoded message larger than the configured (or the server's) limit."""

    def __init__(self, size: int, limit: int, what: str = "message") -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{what} is {size} bytes, over the limit of {limit} bytes; send it as a stream "
            "or raise ACLBUS_MAX_MESSAGE_BYTES (and the server's max_payload)"
        )


class HeadersTooLarge(MessageTooLarge):
    """A persistent message whose header block is over the broker's limit for stored headers.

    JetStream stores at most 65535 bytes of headers per message, whatever the message's size
    limit; raising ``ACLBUS_MAX_MESSAGE_BYTES`` does not help, moving large values from
    headers into the payload does.

    Attributes:
        size: The header block's size in bytes, as on the wire.
        limit: The largest header block the broker stores.
        subject: Where the message was going.
    """

    def __init__(self, size: int, limit: int, subject: str) -> None:
        self.subject = subject
        super().__init__(size, limit)
        # MessageTooLarge's advice (a stream, a larger limit) does not apply to headers.
        self.args = (
            f"the header block of the message to {subject!r} is {size} bytes, over the limit "
            f"of {limit} bytes the broker stores for the headers of a message; move large "
            "values from headers into the payload",
        )


class RequestTimeout(ACLBusError, TimeoutError):
    """No reply arrived within the request's timeout."""

    def __init__(self, subject: str, timeout: float) -> None:
        self.subject = subject
        self.timeout = timeout
        super().__init__(f"no reply on {subject!r} within {timeout:g} s")


class NoResponders(ACLBusError):
    """A request found nobody listening: it failed at once instead of timing out."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(f"no responders on {subject!r}: no agent is serving it")


class NoStream(ACLBusError):
    """A persistent publish to a subject that no stream captures."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(
            f"no stream captures subject {subject!r}: provision a stream for it "
            "or publish with delivery mode at_most_once"
        )


class PublishTimeout(ACLBusError, TimeoutError):
    """The broker did not confirm a persistent publish in time: it may or may not be stored.

    Publish it again with the same message id: within the stream's dedup window the broker
    stores it at most once.
    """

    def __init__(self, subject: str, timeout: float) -> None:
        self.subject = subject
        self.timeout = timeout
        super().__init__(
            f"no acknowledgement for the publish to {subject!r} within {timeout:g} s; "
            "retry with the same message id (it is stored at most once)"
        )


class StreamFull(ACLBusError):
    """A persistent publish refused because a stream (or the server's storage) is full.

    Nothing was stored, and nothing stored was dropped to make room: publish again with the
    same message id once the backlog has been consumed or the limits raised.
    """

    def __init__(self, subject: str, detail: str) -> None:
        self.subject = subject
        super().__init__(
            f"publish to {subject!r} refused, storage is full: {detail}; consume the backlog, "
            "or raise ACLBUS_STREAMS__MAX_BYTES / ACLBUS_STREAMS__MAX_MSGS (or the server's "
            "JetStream limits), then publish again with the same message id"
        )


class PermissionDenied(ACLBusError, PermissionError):
    """The server refused an operation for lack of permission (publish or subscribe)."""

    def __init__(self, operation: str, subject: str) -> None:
        self.operation = operation
        self.subject = subject
        super().__init__(f"permission denied: {operation} on {subject!r}")


class BackendClosed(ACLBusError):
    """An operation on a backend (or bus) that is not connected."""


class TLSError(BackendClosed):
    """The connection's TLS handshake failed: a certificate was refused, by either side.

    Connecting again does not change a certificate, so the connect fails at the first refused
    handshake instead of retrying until its timeout. The message says what was refused and
    which setting to look at; it never holds a key.

    Attributes:
        problem: What is wrong, in words.
    """

    def __init__(self, where: str, problem: str) -> None:
        self.problem = problem
        super().__init__(f"cannot connect to {where}: TLS failed: {problem}")


class AuthenticationError(BackendClosed):
    """The server refused the connection's credentials (or their lack) at connect.

    Connecting again with the same credentials is refused again, so the connect fails at the
    first refusal instead of retrying until its timeout. The message names the setting that
    was used (``ACLBUS_AUTH__TOKEN``, ``ACLBUS_AUTH__NKEY_SEED_FILE``, ...), never a secret.

    Attributes:
        problem: What is wrong, in words.
    """

    def __init__(self, where: str, problem: str) -> None:
        self.problem = problem
        super().__init__(f"cannot connect to {where}: authentication failed: {problem}")


class UnknownBackend(ConfigurationError):
    """``ACLBUS_BACKEND`` names a backend that no installed plugin registers."""

    def __init__(self, name: str, installed: list[str]) -> None:
        self.name = name
        self.installed = installed
        shown = _show(name, 40)
        package = _FIRST_PARTY_BACKENDS.get(name)
        if package is None:
            hint = (
                f" Install the package that provides backend {shown}: its plugin registers it "
                "in aclbus_register_backends (see docs/plugins.md)."
            )
        elif package[1]:
            hint = f' Install it with: pip install "aclbus[{name}]" (the package {package[0]}).'
        else:
            hint = (
                f" The {name} backend will come in the package {package[0]}, which is not "
                "released yet; use one of the installed backends meanwhile."
            )
        super().__init__(
            f"Unknown backend {shown}. Installed: {', '.join(sorted(installed)) or 'none'}.{hint}"
        )


# The backends this project makes: (package, released?).
_FIRST_PARTY_BACKENDS = {"nats": ("aclbus-nats", True), "kafka": ("aclbus-kafka", False)}


class CapabilityError(ConfigurationError):
    """A plugin or feature needs a capability that the configured backend lacks."""

    def __init__(self, who: str, backend: str, missing: list[str]) -> None:
        self.who = who
        self.backend = backend
        self.missing = missing
        super().__init__(
            f"{who} needs {', '.join(missing)}, which backend {backend!r} does not provide"
        )


class PluginError(ACLBusError):
    """A plugin that cannot be loaded or that broke a hook's contract."""


class HopLimitExceeded(ACLBusError):
    """A message passed through more agents than ``ACLBUS_MAX_HOPS``: an agent loop, likely."""

    def __init__(self, message_id: str, hops: int, limit: int, caused_by: tuple[str, ...]) -> None:
        self.message_id = message_id
        self.hops = hops
        self.limit = limit
        self.caused_by = caused_by
        chain = " -> ".join((*caused_by[-4:], message_id))
        super().__init__(
            f"message {message_id!r} has made {hops} hops, over the limit of {limit} "
            f"(causation: {'... -> ' if len(caused_by) > 4 else ''}{chain}); agents are "
            "probably answering each other in a loop. Raise ACLBUS_MAX_HOPS if the chain is meant"
        )


class InvalidPayload(ACLBusError, ValueError):
    """A payload that does not validate against the model its handler declared."""

    def __init__(self, model: str, errors: list[dict[str, object]]) -> None:
        self.model = model
        self.errors = errors
        shown = "; ".join(
            f"{'.'.join(str(p) for p in _seq(e.get('loc'))) or '(payload)'}: {e.get('msg')}"
            for e in errors[:5]
        )
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"payload is not a valid {model}: {shown}{more}")
