"""The metrics of one bus: plain counters and histograms, exposed by a collector at scrape time.

``prometheus_client``'s own `Counter` and `Histogram` take a lock on every increment (about
0.5 µs for a counter, 1 µs for an observation here), which is most of what the middleware
would cost per message. The middleware runs in the bus' event loop, one step at a time, so
its counts need no lock: they are plain ints in slotted cells, bound once per kind of
message, and `Instruments.collect` turns them into metric families when Prometheus scrapes
(a scrape in another thread reads ints, which the GIL keeps whole).

Every metric carries ``backend``; message metrics add ``performative`` and ``message_type``
(empty when the message has none), which the application bounds; outcome metrics add
``outcome`` from a fixed set. No metric is labelled by subject or agent id unless
``agent_label`` is set: per-agent inboxes would make one series per agent.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ConsumeCells", "HistogramCells", "Instruments", "RequestCells", "SentCells"]

_MESSAGE = ["performative", "message_type", "backend"]
_SETTLED = ("acked", "nacked", "terminated", "failed", "unsettled")
_REQUESTS = ("replied", "timeout", "no_responders", "error")


class HistogramCells:
    """The buckets, count and sum of one histogram series.

    Args:
        bounds: The buckets' upper bounds in seconds, ascending.
    """

    __slots__ = ("bounds", "buckets", "count", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose bound is at least ``value``."""
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """The buckets as Prometheus wants them: cumulative, ``le`` as text, +Inf last."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.buckets, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(total)))
        return out


class SentCells:
    """The publish counts of one kind of message."""

    __slots__ = ("sent",)

    def __init__(self) -> None:
        self.sent = 0


class ConsumeCells:
    """The delivery counts and times of one kind of message (to one agent, by setting)."""

    __slots__ = (
        "acked",
        "duration",
        "failed",
        "latency",
        "nacked",
        "received",
        "retried",
        "terminated",
        "unsettled",
    )

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.received = 0
        self.retried = 0
        self.acked = 0
        self.nacked = 0
        self.terminated = 0
        self.failed = 0
        self.unsettled = 0
        self.latency = HistogramCells(bounds)
        self.duration = HistogramCells(bounds)


class RequestCells:
    """The request counts by outcome and times of one kind of message."""

    __slots__ = ("duration", "error", "no_responders", "replied", "timeout")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.replied = 0
        self.timeout = 0
        self.no_responders = 0
        self.error = 0
        self.duration = HistogramCells(bounds)


class Instruments(Collector):
    """The middleware's counts, and the collector that exports them.

    Args:
        backend: The ``backend`` label of every series.
        buckets: Histogram buckets in seconds.
        agent_label: Whether delivery metrics carry an ``agent`` label.
    """

    def __init__(
        self, *, backend: str, buckets: tuple[float, ...], agent_label: bool = False
    ) -> None:
        self.backend = backend
        self.buckets = tuple(sorted(buckets))
        self.agent_label = agent_label
        self._sent: dict[tuple[str, str | None], SentCells] = {}
        self._consume: dict[tuple[str, str | None, str], ConsumeCells] = {}
        self._requests: dict[tuple[str, str | None], RequestCells] = {}
        self.publish_errors: dict[tuple[str, str | None, str], int] = {}
        """Publishes that raised, by (performative, message type, error class)."""

    # -- the hot path: one dict lookup per message ----------------------------------------

    def sent_for(self, performative: str, message_type: str | None) -> SentCells:
        """The publish cells of one kind of message."""
        key = (performative, message_type)
        cells = self._sent.get(key)
        if cells is None:
            cells = self._sent[key] = SentCells()
        return cells

    def consume_for(self, performative: str, message_type: str | None, agent: str) -> ConsumeCells:
        """The delivery cells of one kind of message (to ``agent`` with ``agent_label``)."""
        key = (performative, message_type, agent if self.agent_label else "")
        cells = self._consume.get(key)
        if cells is None:
            cells = self._consume[key] = ConsumeCells(self.buckets)
        return cells

    def request_for(self, performative: str, message_type: str | None) -> RequestCells:
        """The request cells of one kind of message."""
        key = (performative, message_type)
        cells = self._requests.get(key)
        if cells is None:
            cells = self._requests[key] = RequestCells(self.buckets)
        return cells

    # -- the scrape ---------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """The metric families as the counts stand now."""
        b = self.backend
        sent = CounterMetricFamily(
            "aclbus_messages_sent",
            "Messages published (a send to several receivers counts once per receiver).",
            labels=_MESSAGE,
        )
        for (performative, message_type), cells in list(self._sent.items()):
            sent.add_metric([performative, message_type or "", b], cells.sent)
        yield sent
        errors = CounterMetricFamily(
            "aclbus_publish_errors",
            "Publishes that raised, by error class.",
            labels=[*_MESSAGE, "error"],
        )
        for (performative, message_type, error), count in list(self.publish_errors.items()):
            errors.add_metric([performative, message_type or "", b, error], count)
        yield errors
        yield from self._consume_families()
        yield from self._request_families()

    def _consume_families(self) -> Iterator[Metric]:
        labels = [*_MESSAGE, "agent"] if self.agent_label else _MESSAGE
        received = CounterMetricFamily(
            "aclbus_messages_received",
            "Deliveries routed to a handler (redeliveries included).",
            labels=labels,
        )
        retried = CounterMetricFamily(
            "aclbus_messages_retried",
            "Deliveries that are a redelivery (attempt above 1).",
            labels=labels,
        )
        settled = CounterMetricFamily(
            "aclbus_messages_settled",
            "Deliveries by how they ended: acked, nacked (to be retried), terminated, "
            "failed (the handler raised; the bus dead-letters it) or unsettled.",
            labels=[*labels, "outcome"],
        )
        latency = HistogramMetricFamily(
            "aclbus_message_latency_seconds",
            "From the envelope's timestamp to the handler's start.",
            labels=labels,
        )
        duration = HistogramMetricFamily(
            "aclbus_handler_duration_seconds",
            "Time in the handler (and the middleware inside this one), settling included.",
            labels=labels,
        )
        for (performative, message_type, agent), cells in list(self._consume.items()):
            values = [performative, message_type or "", self.backend]
            if self.agent_label:
                values.append(agent)
            received.add_metric(values, cells.received)
            retried.add_metric(values, cells.retried)
            for outcome in _SETTLED:
                settled.add_metric([*values, outcome], getattr(cells, outcome))
            latency.add_metric(values, cells.latency.cumulative(), cells.latency.sum)
            duration.add_metric(values, cells.duration.cumulative(), cells.duration.sum)
        yield from (received, retried, settled, latency, duration)

    def _request_families(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "aclbus_requests",
            "Requests by outcome: replied, timeout, no_responders or error.",
            labels=[*_MESSAGE, "outcome"],
        )
        duration = HistogramMetricFamily(
            "aclbus_request_duration_seconds",
            "From sending a request to its reply (or its failure).",
            labels=_MESSAGE,
        )
        for (performative, message_type), cells in list(self._requests.items()):
            values = [performative, message_type or "", self.backend]
            for outcome in _REQUESTS:
                requests.add_metric([*values, outcome], getattr(cells, outcome))
            duration.add_metric(values, cells.duration.cumulative(), cells.duration.sum)
        yield requests
        yield duration
