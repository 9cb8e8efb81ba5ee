"""The settings of the dedup plugin: ``ACLBUS_DEDUP__*`` and the ``[dedup]`` table."""

from __future__ import annotations

from pydantic import Field, field_validator

from aclbus.settings import SectionSettings, Settings, section_config
from aclbus.subjects import validate_id

__all__ = ["DedupSettings"]


class DedupSettings(SectionSettings):
    """What the dedup plugin does, read from ``ACLBUS_DEDUP__*``, ``.env`` and ``aclbus.toml``.

    Attributes:
        publish: Retry ambiguous persistent publishes with the same message id.
        consume: Run each handler once per message id (claims in a KV bucket).
        window: Seconds a message id is remembered by the consume side after the last write of
            its record; a copy arriving later runs again. None: the streams' duplicate window
            (``ACLBUS_STREAMS__DUPLICATE_WINDOW``), so both sides forget at the same time.
        claim_timeout: Seconds a claim holds off other consumers while its handler runs; once
            it has passed without the claim being finished or extended, the claimant counts
            as dead and the next delivery takes over. None: the bus' ``ack_wait``.
        publish_retries: Times an ambiguous publish is sent again before its error is raised.
        publish_backoff: Seconds before the first resend; doubled for each further one.
        publish_backoff_max: Longest pause between two resends.
        kv_wait: Seconds a delivery that cannot reach the KV bucket is held while its claim
            is retried. Held, it is kept from redelivery with ``in_progress()``, so an outage
            spends none of its delivery attempts (``ACLBUS_MAX_DELIVER``); it is nacked with
            ``error_delay`` (one attempt spent) only once this has passed.
        done_wait: Seconds the ``done`` write is retried before the ack goes out, counted from
            the start of the outage, while the delivery is kept with ``in_progress()``. If the
            write still fails, the delivery is acked and the write goes on in the background
            until it lands or the window is over.
        kv_backoff: Seconds before the first retry of a KV operation; doubled for each
            further one.
        kv_backoff_max: Longest pause between two retries of a KV operation.
        error_delay: Seconds before a delivery comes back when the KV bucket stayed out of
            reach for ``kv_wait`` (it is nacked rather than run without the check).
        bucket: The KV bucket of the claims. None: ``{subject_prefix}-dedup``.
    """

    model_config = section_config("dedup")

    publish: bool = True
    consume: bool = True
    window: float | None = Field(default=None, gt=0)
    claim_timeout: float | None = Field(default=None, gt=0)
    publish_retries: int = Field(default=3, ge=0, le=100)
    publish_backoff: float = Field(default=0.1, ge=0)
    publish_backoff_max: float = Field(default=2.0, ge=0)
    kv_wait: float = Field(default=60.0, ge=0)
    done_wait: float = Field(default=10.0, ge=0)
    kv_backoff: float = Field(default=0.1, gt=0)
    kv_backoff_max: float = Field(default=2.0, gt=0)
    error_delay: float = Field(default=1.0, gt=0)
    bucket: str | None = None

    @field_validator("bucket")
    @classmethod
    def _check_bucket(cls, value: str | None) -> str | None:
        return None if value is None else validate_id(value, "dedup bucket")

    def window_for(self, settings: Settings) -> float:
        """The consume-side window in seconds for a bus with ``settings``."""
        return self.window if self.window is not None else settings.streams.duplicate_window

    def claim_timeout_for(self, settings: Settings) -> float:
        """The claim timeout in seconds for a bus with ``settings``."""
        return self.claim_timeout if self.claim_timeout is not None else settings.ack_wait

    def bucket_for(self, settings: Settings) -> str:
        """The KV bucket name for a bus with ``settings``."""
        return self.bucket if self.bucket is not None else f"{settings.subject_prefix}-dedup"
