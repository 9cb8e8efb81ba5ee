"""The streams a bus provisions on a persistent backend, one per traffic class."""

from __future__ import annotations

from aclbus.backend import DeliveryMode, StreamSpec
from aclbus.settings import Settings
from aclbus.subjects import Subjects, TrafficClass

__all__ = ["provisioned_traffic", "stream_spec"]


def provisioned_traffic(settings: Settings) -> list[TrafficClass]:
    """The traffic classes that get a stream on a persistent backend, in this order."""
    return [
        traffic
        for traffic in TrafficClass
        # A stream over at_most_once broadcasts would store them all the same.
        if not (
            traffic is TrafficClass.BROADCAST
            and settings.broadcast_mode is DeliveryMode.AT_MOST_ONCE
        )
    ]


def stream_spec(settings: Settings, subjects: Subjects, traffic: TrafficClass) -> StreamSpec:
    """The stream of one traffic class, as ``settings.streams`` and the subjects shape it."""
    limits = settings.streams
    return StreamSpec(
        name=subjects.stream(traffic),
        subjects=subjects.stream_subjects(traffic),
        max_age=limits.max_age,
        max_bytes=limits.max_bytes,
        max_msgs=limits.max_msgs,
        max_msg_size=settings.max_message_bytes,
        duplicate_window=limits.duplicate_window,
        storage="memory" if limits.storage == "memory" else "file",
        replicas=limits.replicas,
        discard="old" if limits.discard == "old" else "new",
        max_consumers=limits.max_consumers,
        # An agent's priority lane makes its consumer when its first message is stored.
        announce=subjects.priority_lanes if traffic is TrafficClass.INBOX else None,
    )
