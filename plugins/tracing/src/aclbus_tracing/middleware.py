"""`Tracing`: a span around every send, handle and request, with the trace context on the wire.

Spans follow the OpenTelemetry messaging semantic conventions:

- a **send** (a publish: send, broadcast, a reply to a waiting requester) is a ``PRODUCER``
  span, a child of whatever span is current where the agent sends (the handling span, when a
  handler sends on), and its context goes out in the ``traceparent`` header;
- a **handle** is a ``CONSUMER`` span, a child of the span the ``traceparent`` of the message
  names, current while the handler runs, so what the handler sends continues the trace; an
  exception from the handler is recorded on it (status ``ERROR``, an ``exception`` event, its
  text redacted as in the log); a
  redelivery (a retry) is another handling span under the same sender's span, with its
  ``aclbus.delivery.attempt``;
- a **request** is a ``CLIENT`` span; the responder's handling span is its child, and the reply
  (sent from inside that handling span) is linked back to it when it arrives.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context, attach, detach
from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
    get_tracer,
    set_span_in_context,
)

from aclbus.acl import ACLMessage
from aclbus.middleware import (
    ConsumeNext,
    Delivery,
    Middleware,
    Outgoing,
    PublishNext,
    RequestNext,
)
from aclbus.redaction import redact
from aclbus.specs import PublishAck
from aclbus_tracing.propagation import extract, inject, span_context_of
from aclbus_tracing.settings import TracingSettings

if TYPE_CHECKING:
    from aclbus import Bus

__all__ = ["ATTRIBUTES", "Tracing", "record_error"]

_MAX_STACK = 8_000
"""The longest stack trace an exception event keeps (characters)."""

ATTRIBUTES = (
    "messaging.system",
    "messaging.destination.name",
    "messaging.operation.type",
    "messaging.operation.name",
    "messaging.message.id",
    "messaging.message.conversation_id",
    "aclbus.performative",
    "aclbus.sender_id",
    "aclbus.agent",
    "aclbus.delivery.attempt",
    "aclbus.settlement",
)
"""Every attribute the spans may carry (those of the semantic conventions first)."""


def record_error(span: Span, exc: BaseException) -> None:
    """Mark ``span`` failed by ``exc``: status ERROR and an ``exception`` event, redacted.

    The event has the semantic conventions' ``exception.type``, ``exception.message`` and
    ``exception.stacktrace`` (its last 8,000 characters); the message and each line of the
    stack trace (whose last line repeats the message) pass through `aclbus.redaction.redact`,
    so a password in an error's text is masked in the trace as it is in the log.
    """
    if not span.is_recording():
        return  # nobody will see it: no stack trace to format
    kind = type(exc)
    message = redact(str(exc))
    # redact() makes one line of its text: the stack trace is redacted line by line.
    lines = "".join(traceback.format_exception(exc)).splitlines()
    stack = "\n".join(redact(line) for line in lines if line.strip())[-_MAX_STACK:]
    span.add_event(
        "exception",
        {
            "exception.type": f"{kind.__module__}.{kind.__qualname__}",
            "exception.message": message,
            "exception.stacktrace": stack,
            "exception.escaped": True,
        },
    )
    span.set_status(Status(StatusCode.ERROR, f"{kind.__name__}: {message}"))


class Tracing(Middleware):
    """The tracing middleware of one bus.

    Args:
        bus: The bus it runs on (its backend's name is ``messaging.system``).
        settings: The plugin's settings.
        tracer_provider: Where the spans go; None: the globally configured provider
            (``opentelemetry.trace.set_tracer_provider``), looked up when a span starts, so a
            provider set after the bus starts is used too.
    """

    def __init__(
        self,
        bus: Bus,
        settings: TracingSettings,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        from aclbus_tracing import __version__  # the package imports this module

        self.system = bus.backend.name
        self.propagate = settings.propagate
        self.tracer: Tracer = get_tracer(
            settings.tracer_name, __version__, tracer_provider=tracer_provider
        )

    def _describe(self, span: Span, msg: ACLMessage, subject: str, operation: str) -> None:
        # Set after the span starts, and only on one that records: a span of a trace that is
        # not sampled (or of the API's no-op tracer) costs no attribute work at all.
        attributes: dict[str, Any] = {
            "messaging.system": self.system,
            "messaging.destination.name": subject,
            "messaging.operation.type": "process" if operation == "process" else "send",
            "messaging.operation.name": operation,
            "messaging.message.id": msg.message_id,
            "aclbus.performative": msg.performative.value,
            "aclbus.sender_id": msg.sender_id,
        }
        if msg.correlation_id is not None:
            attributes["messaging.message.conversation_id"] = msg.correlation_id
        span.set_attributes(attributes)

    def _outgoing(self, out: Outgoing, operation: str, kind: SpanKind) -> Span:
        """The started span of a send or request, described and injected into its headers.

        Not made current: the innermost middleware calls only the backend, which starts no
        span of its own, so the span is only injected (attaching a context costs more).
        """
        msg = out.message
        span = self.tracer.start_span(
            f"{operation} {msg.performative.value}", kind=kind, record_exception=False
        )
        if span.is_recording():
            self._describe(span, msg, out.subject, operation)
        if self.propagate:
            inject(out.headers, set_span_in_context(span))
        return span

    async def publish(self, out: Outgoing, call_next: PublishNext) -> PublishAck:
        """A ``PRODUCER`` span around the publish; its context goes out in the headers."""
        span = self._outgoing(out, "send", SpanKind.PRODUCER)
        try:
            return await call_next(out)
        except Exception as exc:
            record_error(span, exc)
            raise
        finally:
            span.end()

    async def request(self, out: Outgoing, call_next: RequestNext) -> ACLMessage:
        """A ``CLIENT`` span around the request; the reply's sending span is linked to it."""
        span = self._outgoing(out, "request", SpanKind.CLIENT)
        try:
            reply = await call_next(out)
        except Exception as exc:  # a timeout, no responder, a refusal
            record_error(span, exc)
            span.end()
            raise
        replied_from = span_context_of(reply.headers) if self.propagate else None
        # A reply that kept the request's own traceparent (a responder that does not trace,
        # forwarding headers) names this very span: no link to itself.
        if replied_from is not None and replied_from != span.get_span_context():
            span.add_link(replied_from, {"aclbus.link": "reply"})
        span.end()
        return reply

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        """A ``CONSUMER`` span, the sender's child, current while the handler runs."""
        msg = delivery.message
        received = delivery.received
        # Not propagating, a handled message is the root of a trace of its own, whatever
        # span the backend's task happens to have current.
        parent = extract(msg.headers) if self.propagate else Context()
        span = self.tracer.start_span(
            f"process {msg.performative.value}",
            context=parent,
            kind=SpanKind.CONSUMER,
            record_exception=False,
        )
        recording = span.is_recording()
        if recording:
            self._describe(span, msg, received.subject, "process")
            span.set_attribute("aclbus.agent", delivery.agent)
            span.set_attribute("aclbus.delivery.attempt", received.attempt)
        # Current while the handler runs, so that what it sends is a child of this span. The
        # exception is recorded here rather than by the SDK: its text goes through `redact`
        # first, as in the bus' log, since an error message may hold a credential.
        token = attach(set_span_in_context(span, parent))
        try:
            await call_next(delivery)
        except Exception as exc:
            record_error(span, exc)
            raise
        finally:
            detach(token)
            if recording and received.settled is not None:
                span.set_attribute("aclbus.settlement", received.settled)
            span.end()
