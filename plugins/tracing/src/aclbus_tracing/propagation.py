"""W3C trace context in the message headers: ``traceparent`` and ``tracestate``.

The headers are ordinary application headers (``docs/wire-format.md``, sections 3.3 and 15):
outside the ``ce-``/``acl-`` envelope, kept in `aclbus.ACLMessage.headers` by the reader (in
lower case, whatever case the sender wrote), and signed with the rest by ``aclbus_signing``.
The propagator is W3C's, not the globally configured one, so that the names on the wire are
always the two the wire format documents, whatever ``OTEL_PROPAGATORS`` says.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry.context import Context
from opentelemetry.trace import SpanContext, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["TRACEPARENT", "TRACESTATE", "extract", "inject", "span_context_of"]

TRACEPARENT = "traceparent"
"""The W3C header naming the trace and the span a message was sent from."""
TRACESTATE = "tracestate"
"""The W3C header of vendor-specific trace state; written only when there is some."""

_W3C = TraceContextTextMapPropagator()


def inject(headers: MutableMapping[str, str], context: Context | None = None) -> None:
    """Write the trace context of ``context`` (default: the current one) into ``headers``."""
    _W3C.inject(headers, context=context)


def extract(headers: Mapping[str, str]) -> Context:
    """The context ``headers`` carry; an empty context (a new trace) when they carry none.

    A malformed ``traceparent`` is ignored as W3C says: the message starts a new trace.
    """
    if TRACEPARENT not in headers:
        return Context()
    return _W3C.extract(headers)


def span_context_of(headers: Mapping[str, str]) -> SpanContext | None:
    """The remote span ``headers`` name, or None when they name none (or a malformed one)."""
    if TRACEPARENT not in headers:
        return None
    found = get_current_span(extract(headers)).get_span_context()
    return found if found.is_valid else None
