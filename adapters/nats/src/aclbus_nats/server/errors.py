"""The errors the embedded server raises."""

from __future__ import annotations

from aclbus import ACLBusError

__all__ = ["EmbeddedServerError", "StoreDirInUse"]


class EmbeddedServerError(ACLBusError):
    """A nats-server that could not be found, configured, started or stopped.

    Attributes:
        log_tail: The last lines of the server's log (and of its stderr) when the server got
            far enough to write any, else an empty string. They are part of the message too.
    """

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        self.log_tail = log_tail
        if log_tail:
            message = f"{message}\n--- last lines of the nats-server log ---\n{log_tail}"
        super().__init__(message)


class StoreDirInUse(EmbeddedServerError):
    """Another nats-server holds the store dir: two servers on one store would corrupt it.

    `aclbus_nats.server.sharing.serving` finds that server's URL, to connect to it instead.
    """
