"""The settings of the tracing plugin: ``ACLBUS_TRACING__*`` and the ``[tracing]`` table."""

from __future__ import annotations

from pydantic import Field

from aclbus.settings import SectionSettings, section_config

__all__ = ["TracingSettings"]


class TracingSettings(SectionSettings):
    """Whether and how a bus traces what its agents send, handle and request.

    Attributes:
        enabled: Put the `aclbus_tracing.Tracing` middleware on the bus. Off by default: an
            installed plugin is active on every bus, and a bus that nobody traces should not
            pay for spans.
        tracer_name: The instrumentation scope the spans are recorded under.
        propagate: Write the W3C ``traceparent``/``tracestate`` headers on what is sent (and
            read them on what is received). Off, every message starts a trace of its own.
    """

    model_config = section_config("tracing")

    enabled: bool = False
    tracer_name: str = Field(default="aclbus_tracing", min_length=1)
    propagate: bool = True
