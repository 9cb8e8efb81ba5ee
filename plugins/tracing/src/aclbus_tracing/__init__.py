"""aclbus-tracing: OpenTelemetry spans across agents, with W3C trace context on the wire.

Enabled (``ACLBUS_TRACING__ENABLED=true``, or ``enabled = true`` in the ``[tracing]`` table of
``aclbus.toml``), the plugin (entry point ``tracing``) puts the `Tracing` middleware on every
bus: a ``PRODUCER`` span per send, a ``CONSUMER`` span per handled delivery (a child of the
sender's span, current while the handler runs, so a handler that sends on continues the
trace), a ``CLIENT`` span per request, with the OpenTelemetry messaging semantic conventions.
The trace context travels in the ``traceparent`` and ``tracestate`` headers
(``docs/wire-format.md``, section 15), so services in other languages join the trace.

The plugin needs only ``opentelemetry-api``: spans go to the globally configured tracer
provider (set up the SDK and an exporter in the application), or to the one given to
`TracingPlugin`. Not enabled (the default), it adds no middleware and costs nothing.

Example:
    ```python
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    # ACLBUS_TRACING__ENABLED=true, then run the agents as usual.
    ```
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from opentelemetry.trace import TracerProvider

from aclbus.plugin import hookimpl
from aclbus_tracing.middleware import ATTRIBUTES, Tracing
from aclbus_tracing.propagation import TRACEPARENT, TRACESTATE, extract, inject
from aclbus_tracing.settings import TracingSettings

if TYPE_CHECKING:
    from aclbus.middleware import MiddlewareFactory
    from aclbus.settings import Settings

try:
    __version__ = version("aclbus-tracing")
except PackageNotFoundError:  # run from a source tree without being installed
    __version__ = "0.0.0"

__all__ = [
    "ATTRIBUTES",
    "TRACEPARENT",
    "TRACESTATE",
    "Tracing",
    "TracingPlugin",
    "TracingSettings",
    "__version__",
    "aclbus_middlewares",
    "extract",
    "inject",
]


# trylast: the innermost middleware, so the handling span is the handler's own (it sees the
# handler's exception before a retry middleware settles it) and what the other middleware
# adds to a message (a new message id, headers) is what the span records.
@hookimpl(trylast=True)
def aclbus_middlewares(settings: Settings) -> Sequence[MiddlewareFactory]:
    """`Tracing` if ``ACLBUS_TRACING__ENABLED`` (or ``[tracing] enabled``); else nothing."""
    tracing = TracingSettings()
    if not tracing.enabled:
        return []
    return [partial(Tracing, settings=tracing)]


class TracingPlugin:
    """The plugin with its settings and tracer provider given in code.

    Load it instead of the entry point (``Bus(..., plugins=[TracingPlugin(...)])`` with
    ``entry_points=False`` or ``ACLBUS_DISABLE_PLUGINS=tracing``), not beside it. Given in
    code, it is enabled unless ``settings`` says otherwise.

    Args:
        tracer_provider: Where the spans go; None: the globally configured provider.
        settings: The settings; None: the defaults, enabled.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        settings: TracingSettings | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.settings = settings if settings is not None else TracingSettings(enabled=True)

    @hookimpl(trylast=True)
    def aclbus_middlewares(self, settings: Settings) -> Sequence[MiddlewareFactory]:
        """`Tracing` with this plugin's provider, unless its settings disable it."""
        if not self.settings.enabled:
            return []
        return [partial(Tracing, settings=self.settings, tracer_provider=self.tracer_provider)]
