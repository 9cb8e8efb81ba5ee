"""Retry policies: how often to try a message, how long to wait between tries, what to retry.

A `RetryPolicy` is plain data with two questions it answers: `RetryPolicy.retryable` (is this
error worth another attempt?) and `RetryPolicy.delay` (how long before attempt ``n + 1``?).
The `policy` decorator puts a partial policy on one handler; the middleware merges it over the
agent's and the default policy, field by field.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, TypedDict, TypeVar, Unpack

from aclbus.errors import ACLBusError, ConfigurationError

__all__ = [
    "ErrorFilter",
    "NotRetryable",
    "PolicyFields",
    "ProgressInterval",
    "RetryPolicy",
    "handler_overrides",
    "handler_progress_declared",
    "policy",
]

ErrorFilter = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)
"""Which errors to retry: exception types (``isinstance``) or a predicate ``f(exc) -> bool``."""

ProgressInterval = float | Literal["auto"] | None
"""Seconds between ``in_progress`` heartbeats; ``"auto"``: a third of ``ack_wait``; None: off."""

F = TypeVar("F", bound=Callable[..., Any])

_HANDLER_ATTR = "__aclbus_retry__"


class NotRetryable(ACLBusError):
    """Raised by a handler to give a message up at once, whatever the policy retries.

    The message is dead-lettered with reason ``not-retryable``. Wrap the real cause to keep it
    in the dead letter's traceback: ``raise NotRetryable("order 7 does not exist") from exc``.
    """


class PolicyFields(TypedDict, total=False):
    """The fields of a `RetryPolicy`, each optional: what an override may set."""

    max_attempts: int
    initial_interval: float
    max_interval: float
    multiplier: float
    jitter: float
    retry_on: ErrorFilter
    give_up_on: type[BaseException] | tuple[type[BaseException], ...]
    progress_interval: ProgressInterval


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing handler is retried.

    Delivery attempt ``n`` (from 1) failed: if the error is retryable and ``n < max_attempts``
    the message comes back after `delay` ``(n)`` seconds, else it is dead-lettered. The delay
    before attempt ``n + 1`` is ``min(initial_interval * multiplier ** (n - 1), max_interval)``,
    then jittered: multiplied by a factor drawn uniformly from ``[1 - jitter, 1 + jitter]``.

    Attributes:
        max_attempts: Deliveries of one message at most, the first included (1: no retry).
        initial_interval: Seconds before the second attempt (before jitter).
        max_interval: The longest delay before jitter; the exponential growth stops there.
        multiplier: Each delay is this many times the one before (1: a constant delay).
        jitter: Fraction of random spread around each delay, 0 to 1 (0.2: ±20 %), so that
            messages that failed together do not all come back at the same instant.
        retry_on: The errors worth retrying: exception types, or a predicate on the error.
        give_up_on: Exception types never retried, even when ``retry_on`` matches them.
            `NotRetryable` is never retried either.
        progress_interval: While the handler runs, tell the broker it is still working
            (``in_progress``) every this many seconds, so that a handler longer than
            ``ack_wait`` is not redelivered; ``"auto"``: a third of ``ack_wait``; None: off.

    Raises:
        ConfigurationError: A field is out of range or of the wrong kind.
    """

    max_attempts: int = 5
    initial_interval: float = 1.0
    max_interval: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.2
    retry_on: ErrorFilter = (Exception,)
    give_up_on: type[BaseException] | tuple[type[BaseException], ...] = ()
    progress_interval: ProgressInterval = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = _checked(f.name, getattr(self, f.name))
            object.__setattr__(self, f.name, value)

    def retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` is worth another attempt under this policy."""
        if isinstance(exc, (NotRetryable, self.give_up_on)):
            return False
        match = self.retry_on
        if isinstance(match, (type, tuple)):
            return isinstance(exc, match)
        return bool(match(exc))

    def base_delay(self, attempt: int) -> float:
        """The delay after failed attempt ``attempt`` (from 1), before jitter, in seconds."""
        if attempt < 1:
            raise ValueError(f"attempt counts from 1, got {attempt!r}")
        if not self.initial_interval:
            return 0.0
        try:
            grown = self.initial_interval * self.multiplier ** (attempt - 1)
        except OverflowError:
            grown = math.inf
        return min(grown, self.max_interval)

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The least and the greatest `delay` after failed attempt ``attempt``."""
        base = self.base_delay(attempt)
        return base * (1 - self.jitter), base * (1 + self.jitter)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before redelivering after failed attempt ``attempt`` (from 1).

        Args:
            attempt: The delivery attempt that failed (`aclbus.Delivery.attempt`).
            rng: Where the jitter comes from; None: the `random` module. Pass a seeded
                `random.Random` for repeatable delays.

        Raises:
            ValueError: ``attempt`` is below 1.
        """
        base = self.base_delay(attempt)
        if not self.jitter:
            return base
        spread = (rng.random() if rng is not None else random.random()) * 2 - 1
        return max(0.0, base * (1 + self.jitter * spread))

    def heartbeat(self, ack_wait: float) -> float | None:
        """Seconds between ``in_progress`` heartbeats for a consumer with ``ack_wait``, or None."""
        if self.progress_interval == "auto":
            return ack_wait / 3
        return self.progress_interval

    def merged(self, overrides: Mapping[str, Any]) -> RetryPolicy:
        """This policy with the fields in ``overrides`` replaced.

        Raises:
            ConfigurationError: An override names no field, or has a bad value.
        """
        if not overrides:
            return self
        unknown = sorted(set(overrides) - _FIELDS)
        if unknown:
            raise ConfigurationError(
                f"unknown retry policy field(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(_FIELDS))}"
            )
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(overrides)
        return RetryPolicy(**values)


_FIELDS = frozenset(f.name for f in fields(RetryPolicy))


def policy(**overrides: Unpack[PolicyFields]) -> Callable[[F], F]:
    """Give one handler its own retry policy fields; the rest come from its agent's policy.

    Put it above or below ``@agent.on(...)``: it marks the function itself, which is what the
    agent routes to, so the order does not matter. Precedence, field by field: handler, then
    agent (``[retry.agents.<id>]``), then the default (``[retry]``).

    Example:
        ```python
        @worker.on(Performative.REQUEST)
        @aclbus_retry.policy(max_attempts=3, retry_on=(TimeoutError, ConnectionError))
        async def fetch(msg: ACLMessage) -> None: ...
        ```

    Args:
        **overrides: `RetryPolicy` fields.

    Raises:
        ConfigurationError: A field has a bad value (raised when the handler is defined).
        TypeError: The decorated object cannot carry attributes.
    """
    checked = {name: _checked(name, value) for name, value in overrides.items()}
    RetryPolicy().merged(checked)  # unknown names fail here, at definition time

    def mark(func: F) -> F:
        try:
            setattr(func, _HANDLER_ATTR, dict(checked))
        except (AttributeError, TypeError):
            raise TypeError(
                f"@aclbus_retry.policy cannot mark {func!r}: put it on the handler's own async def"
            ) from None
        if checked.get("progress_interval") is not None:
            _Declared.handler_progress = True
        return func

    return mark


def handler_overrides(func: object) -> Mapping[str, Any] | None:
    """The fields `policy` put on a handler, or None when it has none."""
    found: Mapping[str, Any] | None = getattr(func, _HANDLER_ATTR, None)
    return found


def handler_progress_declared() -> bool:
    """Whether any handler in this process asked for heartbeats with `policy`.

    The middleware looks up a delivery's handler before calling it only when heartbeats may
    apply, so that with none configured a message costs no lookup at all.
    """
    return _Declared.handler_progress


class _Declared:
    handler_progress = False


def _exception_types(name: str, value: object) -> tuple[type[BaseException], ...]:
    if isinstance(value, type):
        items: tuple[object, ...] = (value,)
    elif isinstance(value, (tuple, list)):
        items = tuple(value)
    else:
        raise ConfigurationError(f"retry policy {name} must be exception types, got {value!r}")
    types: list[type[BaseException]] = []
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ConfigurationError(f"retry policy {name} must hold exception types, got {item!r}")
        types.append(item)
    return tuple(types)


def _number(name: str, value: object, *, least: float, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigurationError(f"retry policy {name} must be a number, got {value!r}")
    if value < least or (strict and value == least) or math.isinf(value):
        bound = f"above {least:g}" if strict else f"at least {least:g}"
        raise ConfigurationError(f"retry policy {name} must be finite and {bound}, got {value!r}")
    return float(value)


def _checked(name: str, value: Any) -> Any:
    """``value`` validated (and normalised) for policy field ``name``."""
    if name == "max_attempts":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(
                f"retry policy max_attempts must be an integer of at least 1, got {value!r}"
            )
        return value
    if name in ("initial_interval", "max_interval"):
        return _number(name, value, least=0.0)
    if name == "multiplier":
        return _number(name, value, least=1.0)
    if name == "jitter":
        jitter = _number(name, value, least=0.0)
        if jitter > 1:
            raise ConfigurationError(f"retry policy jitter must be 0 to 1, got {value!r}")
        return jitter
    if name == "retry_on":
        if isinstance(value, (type, tuple, list)):
            return _exception_types(name, value)
        if callable(value):
            return value
        raise ConfigurationError(
            f"retry policy retry_on must be exception types or a predicate, got {value!r}"
        )
    if name == "give_up_on":
        return _exception_types(name, value)
    if name == "progress_interval":
        if value is None or value == "auto":
            return value
        return _number(name, value, least=0.0, strict=True)
    return value  # an unknown name: `RetryPolicy.merged` reports it
