"""The streams this backend provisioned, and what their specs tell without asking the server.

Publishing asks which stream captures a subject (to retry one that JetStream did not answer
yet, and for the size limit of a refusal); consuming asks which stream stores a pattern (to
spare nats-py the round trip that looks it up) and which one announces it (lazy
subscriptions). Provisioning records each stream as the server kept it.
"""

from __future__ import annotations

from aclbus.backend import StreamSpec, SubscriptionSpec
from aclbus.subjects import covers, subject_matches

__all__ = ["NATS_HEADER_ALLOWANCE", "ProvisionedStreams"]

NATS_HEADER_ALLOWANCE = 512
"""Bytes a stream's ``max_msg_size`` allows beyond ``ACLBUS_MAX_MESSAGE_BYTES``: room for the
``Nats-Msg-Id`` and ``Nats-TTL`` headers the backend adds, which aclbus' own size check leaves
out (docs/wire-format.md, section 10). Without it a message just under the limit would pass the
bus' check and then be refused by the stream."""


class ProvisionedStreams:
    """The specs of the streams provisioned through this backend, by name."""

    def __init__(self) -> None:
        self._specs: dict[str, StreamSpec] = {}
        self._announced: dict[str, str] = {}  # stream -> the pattern it announces

    def add(self, spec: StreamSpec, *, announced: bool) -> None:
        """Record ``spec`` as provisioned.

        Args:
            spec: The stream's spec.
            announced: Whether the server kept its announcements (`StreamSpec.announce`):
                lazy subscriptions rely on them only then.
        """
        self._specs[spec.name] = spec
        if announced and spec.announce:
            self._announced[spec.name] = spec.announce
        else:
            self._announced.pop(spec.name, None)

    def names(self) -> list[str]:
        """The names of the provisioned streams, sorted."""
        return sorted(self._specs)

    def of(self, subject: str) -> StreamSpec | None:
        """The provisioned stream that captures ``subject``, or None."""
        for spec in self._specs.values():
            if any(subject_matches(p, subject) for p in spec.subjects):
                return spec
        return None

    def covering(self, pattern: str) -> StreamSpec | None:
        """The provisioned stream that stores every subject matching ``pattern``, or None."""
        for spec in self._specs.values():
            if any(covers(p, pattern) for p in spec.subjects):
                return spec
        return None

    def limit_of(self, subject: str) -> int | None:
        """The ``max_msg_size`` the server enforces on ``subject``, if a stream sets one."""
        spec = self.of(subject)
        if spec is None or spec.max_msg_size is None:
            return None
        return spec.max_msg_size + NATS_HEADER_ALLOWANCE

    def announcing(self, spec: SubscriptionSpec) -> str | None:
        """The stream that announces ``spec``'s subject to a lazy durable, or None."""
        if spec.durable is None:
            return None
        for stream, pattern in self._announced.items():
            if covers(pattern, spec.subject):
                return stream
        return None
