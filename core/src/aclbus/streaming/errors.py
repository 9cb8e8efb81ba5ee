"""The errors of streams: every one derives from `StreamError`, itself an `ACLBusError`."""

from __future__ import annotations

from aclbus.errors import ACLBusError

__all__ = [
    "BadFrame",
    "StreamBroken",
    "StreamCancelled",
    "StreamError",
    "StreamFailed",
    "StreamRefused",
    "StreamTimeout",
]


class StreamError(ACLBusError):
    """Root of the errors of a flow of chunks (`aclbus.streaming`)."""


class StreamBroken(StreamError):
    """The flow cannot go on: a frame is missing, repeated, malformed or fails its checksum.

    Streams travel ``at_most_once``: a lost frame is detected (by its sequence number), never
    repaired. Open the stream again to retry.
    """


class BadFrame(StreamBroken, ValueError):
    """A frame whose flow headers are missing or malformed.

    Attributes:
        header: The header that is wrong (``aclbus-flow-seq``).
        problem: What is wrong with it, in words.
    """

    def __init__(self, header: str, problem: str) -> None:
        self.header = header
        self.problem = problem
        super().__init__(f"bad stream frame: {header}: {problem}")


class StreamCancelled(StreamError):
    """The other side of the flow cancelled it (it closed its end, or gave up on an error)."""


class StreamTimeout(StreamError, TimeoutError):
    """Nothing was heard from the other side of the flow for its idle timeout: it is gone.

    Attributes:
        timeout: The idle timeout, in seconds.
    """

    def __init__(self, flow: str, timeout: float) -> None:
        self.flow = flow
        self.timeout = timeout
        super().__init__(
            f"stream {flow}: nothing heard from the other side for {timeout:g} s; it is gone "
            "(raise the stream's timeout if it is only slow to start)"
        )


class StreamFailed(StreamError):
    """The other side's code raised: the producer's generator or the receiving handler.

    Attributes:
        error_type: The name of the exception's type (``ValueError``).
        detail: Its message, with credentials masked.
    """

    def __init__(self, error_type: str, detail: str) -> None:
        self.error_type = error_type
        self.detail = detail
        super().__init__(f"the other side of the stream failed: {error_type}: {detail}")


class StreamRefused(StreamError):
    """The receiver answered the opening of a stream with something else than an accept.

    Attributes:
        receiver: The agent that was asked.
        performative: The act it answered with (``not-understood``, ``failure``, ...).
    """

    def __init__(self, receiver: str, performative: str, reason: str) -> None:
        self.receiver = receiver
        self.performative = performative
        super().__init__(
            f"agent {receiver!r} did not accept the stream (it answered {performative}: "
            f"{reason}); give it a handler with Agent.on_stream"
        )
