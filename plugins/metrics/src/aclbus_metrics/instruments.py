"""The metrics of one bus: counters and histograms in a registry, with bounded labels.

Every metric carries ``backend`` (the bus' backend name); message metrics add
``performative`` and ``message_type`` (empty when the message has none), which the
application bounds; outcome metrics add ``outcome`` from a fixed set. No metric is labelled
by subject or by agent id unless ``agent_label`` is set: per-agent inboxes would make one
series per agent.

Labelled children are bound once per label combination and kept (`Instruments.sent_for` and
friends), so the hot path does one tuple-keyed dict lookup, not a label resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.registry import Collector

__all__ = ["ConsumeChildren", "Instruments", "RequestChildren"]

_MESSAGE = ("performative", "message_type", "backend")


@dataclass(frozen=True, slots=True)
class ConsumeChildren:
    """The bound children for deliveries of one kind of message (to one agent)."""

    received: Counter
    retried: Counter
    latency: Histogram
    duration: Histogram
    acked: Counter
    nacked: Counter
    terminated: Counter
    failed: Counter
    unsettled: Counter


@dataclass(frozen=True, slots=True)
class RequestChildren:
    """The bound children for requests of one kind of message."""

    replied: Counter
    timeout: Counter
    no_responders: Counter
    error: Counter
    duration: Histogram


class Instruments:
    """The counters and histograms the middleware feeds, registered in ``registry``.

    Args:
        registry: Where they are registered.
        backend: The ``backend`` label of every series.
        buckets: Histogram buckets in seconds.
        agent_label: Whether delivery metrics carry an ``agent`` label.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        backend: str,
        buckets: tuple[float, ...],
        agent_label: bool = False,
    ) -> None:
        self.backend = backend
        self.agent_label = agent_label
        delivery = (*_MESSAGE, "agent") if agent_label else _MESSAGE
        self.sent = Counter(
            "aclbus_messages_sent",
            "Messages published (a send to several receivers counts once per receiver).",
            _MESSAGE,
            registry=registry,
        )
        self.publish_errors = Counter(
            "aclbus_publish_errors",
            "Publishes that raised, by error class.",
            (*_MESSAGE, "error"),
            registry=registry,
        )
        self.received = Counter(
            "aclbus_messages_received",
            "Deliveries routed to a handler (redeliveries included).",
            delivery,
            registry=registry,
        )
        self.retried = Counter(
            "aclbus_messages_retried",
            "Deliveries that are a redelivery (attempt above 1).",
            delivery,
            registry=registry,
        )
        self.settled = Counter(
            "aclbus_messages_settled",
            "Deliveries by how they ended: acked, nacked (to be retried), terminated, "
            "failed (the handler raised; the bus dead-letters it) or unsettled.",
            (*delivery, "outcome"),
            registry=registry,
        )
        self.latency = Histogram(
            "aclbus_message_latency_seconds",
            "From the envelope's timestamp to the handler's start.",
            delivery,
            buckets=buckets,
            registry=registry,
        )
        self.duration = Histogram(
            "aclbus_handler_duration_seconds",
            "Time in the handler (and the middleware inside this one), settling included.",
            delivery,
            buckets=buckets,
            registry=registry,
        )
        self.requests = Counter(
            "aclbus_requests",
            "Requests by outcome: replied, timeout, no_responders or error.",
            (*_MESSAGE, "outcome"),
            registry=registry,
        )
        self.request_duration = Histogram(
            "aclbus_request_duration_seconds",
            "From sending a request to its reply (or its failure).",
            _MESSAGE,
            buckets=buckets,
            registry=registry,
        )
        self.collectors: tuple[Collector, ...] = (
            self.sent,
            self.publish_errors,
            self.received,
            self.retried,
            self.settled,
            self.latency,
            self.duration,
            self.requests,
            self.request_duration,
        )
        """Every metric above, to unregister them from a shared registry."""
        self._sent: dict[tuple[str, str | None], Counter] = {}
        self._consume: dict[tuple[str, str | None, str], ConsumeChildren] = {}
        self._requests: dict[tuple[str, str | None], RequestChildren] = {}

    def sent_for(self, performative: str, message_type: str | None) -> Counter:
        """The ``aclbus_messages_sent_total`` child for one kind of message."""
        key = (performative, message_type)
        child = self._sent.get(key)
        if child is None:
            child = self._sent[key] = self.sent.labels(
                performative, message_type or "", self.backend
            )
        return child

    def consume_for(
        self, performative: str, message_type: str | None, agent: str
    ) -> ConsumeChildren:
        """The delivery children for one kind of message (to ``agent`` with ``agent_label``)."""
        key = (performative, message_type, agent if self.agent_label else "")
        children = self._consume.get(key)
        if children is None:
            labels = [performative, message_type or "", self.backend]
            if self.agent_label:
                labels.append(agent)
            settled = self.settled
            children = self._consume[key] = ConsumeChildren(
                received=self.received.labels(*labels),
                retried=self.retried.labels(*labels),
                latency=self.latency.labels(*labels),
                duration=self.duration.labels(*labels),
                acked=settled.labels(*labels, "acked"),
                nacked=settled.labels(*labels, "nacked"),
                terminated=settled.labels(*labels, "terminated"),
                failed=settled.labels(*labels, "failed"),
                unsettled=settled.labels(*labels, "unsettled"),
            )
        return children

    def request_for(self, performative: str, message_type: str | None) -> RequestChildren:
        """The request children for one kind of message."""
        key = (performative, message_type)
        children = self._requests.get(key)
        if children is None:
            labels = (performative, message_type or "", self.backend)
            requests = self.requests
            children = self._requests[key] = RequestChildren(
                replied=requests.labels(*labels, "replied"),
                timeout=requests.labels(*labels, "timeout"),
                no_responders=requests.labels(*labels, "no_responders"),
                error=requests.labels(*labels, "error"),
                duration=self.request_duration.labels(*labels),
            )
        return children
