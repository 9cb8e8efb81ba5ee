"""The subscriptions the engine accepts: `check_subscription_spec`, before anything is made."""

from __future__ import annotations

from aclbus.backend import DeliveryMode, SubscriptionSpec
from aclbus.errors import ConfigurationError
from aclbus.subjects import check_filter, validate_id

__all__ = ["check_subscription_spec"]

_ALO = DeliveryMode.AT_LEAST_ONCE
_AMO = DeliveryMode.AT_MOST_ONCE


def check_subscription_spec(spec: SubscriptionSpec) -> None:
    """Refuse a subscription the engine cannot serve, as JetStream would.

    Raises:
        InvalidIdentifier: A bad subject filter, durable name or queue group.
        ConfigurationError: An unknown mode or deliver policy, or an ack setting out of
            range (``concurrency``, ``ack_wait``, ``max_deliver``, ``max_ack_pending``,
            ``backoff``), or a lazy subscription that would skip its first message.
    """
    check_filter(spec.subject)
    where = f"subscription to {spec.subject!r}"
    if spec.mode not in (_ALO, _AMO):
        raise ConfigurationError(f"{where}: unknown delivery mode {spec.mode!r}")
    if spec.deliver not in ("all", "new"):
        raise ConfigurationError(f"{where}: deliver={spec.deliver!r} must be 'all' or 'new'")
    if spec.concurrency < 1:
        raise ConfigurationError(f"{where}: concurrency={spec.concurrency!r} must be >= 1")
    if not spec.ack_wait > 0:
        raise ConfigurationError(f"{where}: ack_wait={spec.ack_wait!r} must be > 0 seconds")
    if spec.max_deliver is not None and spec.max_deliver < 1:
        raise ConfigurationError(f"{where}: max_deliver={spec.max_deliver!r} must be >= 1")
    if spec.max_ack_pending < 1:
        raise ConfigurationError(f"{where}: max_ack_pending={spec.max_ack_pending!r} must be >= 1")
    if any(not delay > 0 for delay in spec.backoff):
        raise ConfigurationError(f"{where}: every backoff step must be > 0, got {spec.backoff!r}")
    if spec.durable is not None:
        validate_id(spec.durable, "durable consumer name")
    if spec.queue is not None:
        validate_id(spec.queue, "queue group")
    if spec.lazy and spec.mode == _ALO and spec.deliver != "all":
        # The first message is stored before the consumer exists: "new" would skip it.
        raise ConfigurationError(
            f"{where}: a lazy subscription delivers what is stored: deliver must be 'all'"
        )
