"""Order keys: the `ordered` decorator, the headers that carry sequence numbers, and stamps.

A publishing bus numbers its persistent messages per *series*: one series per sender, subject
and key, for each of the two keys a message may carry (its ``routing_key``, and its
``correlation_id`` for the conversation). The number travels in a header, one per key:

```python
aclbus-order-rk:   <series>.<check>.<seq>     (the routing-key series)
aclbus-order-conv: <series>.<check>.<seq>     (the conversation series)
```

``<series>`` is ``<epoch>-<generation>``: the epoch is random per publishing bus, so a
restarted publisher starts new series at 1 instead of looking like a gap; ``<check>`` is the
CRC-32 of the subject the message was published to, so a stamp copied onto another subject
(a forwarded message) is recognised as not belonging there; ``<seq>`` counts from 1.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, cast, get_args

from aclbus.acl import ACLMessage
from aclbus.errors import ConfigurationError

__all__ = [
    "CONVERSATION",
    "HEADER_PREFIX",
    "HEADERS",
    "ROUTING_KEY",
    "KeyKind",
    "OrderSpec",
    "Stamp",
    "format_stamp",
    "key_of",
    "ordered",
    "parse_stamp",
    "spec_of",
    "subject_check",
]

KeyKind = Literal["routing_key", "conversation"]
"""The two keys a publisher numbers messages by."""

ROUTING_KEY: Final[KeyKind] = "routing_key"
CONVERSATION: Final[KeyKind] = "conversation"

HEADER_PREFIX: Final = "aclbus-order-"
HEADERS: Final[dict[KeyKind, str]] = {
    ROUTING_KEY: "aclbus-order-rk",
    CONVERSATION: "aclbus-order-conv",
}
"""The header that carries each key's stamp."""

_ATTRIBUTE: Final = "__aclbus_ordering__"

H = TypeVar("H", bound=Callable[..., Awaitable[Any]])


def key_of(msg: ACLMessage, kind: KeyKind) -> str | None:
    """The value of key ``kind`` in ``msg``: its routing key, or its conversation id."""
    return msg.routing_key if kind == ROUTING_KEY else msg.correlation_id


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """What an ordered handler asked for.

    Attributes:
        kind: The series its messages are ordered by.
        group: Which messages never run at the same time; None: those of one key of ``kind``.
    """

    kind: KeyKind
    group: Callable[[ACLMessage], str | None] | None = None

    def group_of(self, msg: ACLMessage) -> str | None:
        """The mutual-exclusion group of ``msg`` (None: not ordered)."""
        if self.group is None:
            return key_of(msg, self.kind)
        return self.group(msg)


def ordered(
    key: KeyKind | Callable[[ACLMessage], str | None] = ROUTING_KEY,
) -> Callable[[H], H]:
    """Mark a handler as ordered: its messages of one key run one at a time, in publish order.

    Put it on a handler, above or below ``@agent.on(...)``:

    ```python
    @worker.on(Performative.INFORM)
    @aclbus_ordering.ordered(key="routing_key")
    async def apply(msg: ACLMessage) -> None: ...
    ```

    Args:
        key: ``"routing_key"`` (the default): messages with one ``routing_key`` from one
            sender are handled in the order that sender published them. ``"conversation"``:
            the same per ``correlation_id``. A callable ``(msg) -> str | None``: messages for
            which it returns one value run one at a time, each sender's routing-key series in
            publish order (None: that message is not ordered).

    Raises:
        ConfigurationError: ``key`` is neither a known key nor callable.
    """
    if callable(key):
        spec = OrderSpec(ROUTING_KEY, key)
    elif key in get_args(KeyKind):
        spec = OrderSpec(key)
    else:
        raise ConfigurationError(
            f"ordered(key={key!r}): the key must be 'routing_key', 'conversation' or a "
            "callable taking the message"
        )

    def decorate(func: H) -> H:
        try:
            setattr(func, _ATTRIBUTE, spec)
        except AttributeError:  # a bound method: mark a thin wrapper instead
            wrapper = _wrap(func)
            setattr(wrapper, _ATTRIBUTE, spec)
            return wrapper
        return func

    return decorate


def _wrap(func: H) -> H:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await func(*args, **kwargs)

    return cast(H, wrapper)


def spec_of(func: object) -> OrderSpec | None:
    """The `OrderSpec` of a handler marked with `ordered`, or None."""
    spec = getattr(func, _ATTRIBUTE, None)
    return spec if isinstance(spec, OrderSpec) else None


@dataclass(frozen=True, slots=True)
class Stamp:
    """A message's place in a series.

    Attributes:
        series: The series (``<epoch>-<generation>``).
        seq: Its number in the series, from 1.
    """

    series: str
    seq: int


@functools.lru_cache(maxsize=4096)
def subject_check(subject: str) -> str:
    """The check a stamp carries for ``subject``: its CRC-32, 8 hex digits."""
    return f"{zlib.crc32(subject.encode()):08x}"


def format_stamp(series: str, check: str, seq: int) -> str:
    """The header value of message ``seq`` of ``series`` published with ``check``."""
    return f"{series}.{check}.{seq}"


def parse_stamp(value: str, subject: str) -> Stamp | None:
    """Read a stamp header; None if it is malformed or was made for another subject."""
    series, _, rest = value.partition(".")
    check, _, seq = rest.partition(".")
    if (
        not series
        or not (seq.isascii() and seq.isdigit())
        or len(seq) > 18
        or check != subject_check(subject)
    ):
        return None
    number = int(seq)
    return Stamp(series, number) if number > 0 else None
