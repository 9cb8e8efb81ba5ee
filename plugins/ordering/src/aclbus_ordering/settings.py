"""The plugin's settings: ``ACLBUS_ORDERING__*`` variables and ``[ordering]`` in aclbus.toml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from aclbus.settings import SectionSettings, section_config

__all__ = ["OrderingSettings"]


class OrderingSettings(SectionSettings):
    """How ordered handlers wait for the messages before theirs.

    Attributes:
        hold_wait: Seconds a message that arrived ahead of its turn waits in the process for
            the one before it, before it is handed back to the broker.
        hold_delay: Seconds the broker holds a message handed back (``nack(delay=...)``)
            before delivering it again; longer when needed so that the message's deliveries
            (``ACLBUS_MAX_DELIVER``) last until ``gap_timeout``.
        gap_timeout: Seconds a key waits for a missing message before it declares a gap and
            goes on with the next message it has.
        start_timeout: Seconds a key waits for earlier messages when the first message this
            process sees of a sender's series is not the series' first (the consumer restarted,
            or the series was evicted); then it starts from the lowest one it has seen.
        max_keys: Series tracked at most, on each side (publish counters and consumer state);
            the least recently used is forgotten beyond it.
        late: What to do with a message that arrives after its gap was declared:
            ``dead-letter`` it (reason ``ordering-late``) or ``handle`` it out of order.
    """

    model_config = section_config("ordering")

    hold_wait: float = Field(default=0.1, ge=0)
    hold_delay: float = Field(default=0.5, gt=0)
    gap_timeout: float = Field(default=10.0, gt=0)
    start_timeout: float = Field(default=2.0, ge=0)
    max_keys: int = Field(default=10_000, ge=1)
    late: Literal["dead-letter", "handle"] = "dead-letter"

    @model_validator(mode="after")
    def _check_waits(self) -> OrderingSettings:
        if self.hold_wait >= self.gap_timeout:
            raise ValueError(
                f"hold_wait ({self.hold_wait:g} s) must be shorter than gap_timeout "
                f"({self.gap_timeout:g} s)"
            )
        return self
