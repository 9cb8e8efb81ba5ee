"""Envelopes seen before: the headers that repeat from message to message, parsed once.

Most of an envelope repeats between the messages of one conversation or one sender: who
sends, to whom, the performative, the type, the codec. Only ``ce-id`` and ``ce-time`` (and the
broker's ``nats-*`` headers, which decoding ignores) change with every message. `encode`
writes those two first, so the rest of a block is a tuple of the header items that compares
equal whenever the same envelope comes again; `Repeats` keeps what decoding made of it (every
field but the id, the time and the payload) and a message whose rest was seen before costs a
dictionary lookup, the check of its id and its time, and its body's decoding.

Nothing is trusted that was not checked: an entry is made from a message the full decoder
accepted, its key holds every header that decoder read (names and values as they came), and
whatever a block has that the entry does not vouch for (the id, the time, the trailing
``nats-*`` headers) is checked again, or the block goes the full way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from aclbus.wire.header_block import HEADER_TOKEN, ParsedHeaders

__all__ = ["Repeat", "Repeats", "split"]

_CAP: Final = 4096
"""Envelopes kept; a full table starts again (the ones in use come back) rather than grow."""
_ONE_OFF_FIELDS: Final = ("caused_by", "in_reply_to", "reply_by")
"""Fields that name one other message or moment: an envelope with one is not kept (replies
would fill the table with envelopes that never come again, and empty it of those that do)."""
# The size `encoded_size` counts for the two varying headers, without their values:
# 4 bytes (": " and CRLF) plus the name, each.
_VARYING_OVERHEAD: Final = 4 + len("ce-id") + 4 + len("ce-time")


class Repeat(NamedTuple):
    """What decoding made of an envelope's repeating headers.

    Attributes:
        fields: Every field of the message but ``message_id``, ``timestamp`` and
            ``payload`` (their values here are the first message's: always replaced).
        content_type: The body's content type (``content-type``, or the default).
        size: The repeating headers' share of `encoded_size`.
        copies: Whether ``extensions`` or ``headers`` hold anything (a message gets copies:
            a handler may change its own).
    """

    fields: dict[str, Any]
    content_type: str
    size: int
    copies: bool


def split(headers: Mapping[str, str]) -> tuple[str, str, tuple[tuple[str, str], ...]] | None:
    """``(ce-id, ce-time, key)`` of a block in `encode`'s order, or None for any other.

    The key is every header but those two and the ``nats-*`` ones at the end (the broker's
    ``Nats-Msg-Id`` and ``Nats-TTL``), which are checked here as decoding would check them:
    text, and for a mapping that is no `ParsedHeaders`, a token for a name.
    """
    items = tuple(headers.items())
    if len(items) < 3:
        return None
    (first, ce_id), (second, ce_time) = items[0], items[1]
    if first != "ce-id" or second != "ce-time":
        return None
    end = len(items)
    checked = isinstance(headers, ParsedHeaders)  # its backend checked every name
    while end > 2:
        name, value = items[end - 1]
        if name.__class__ is not str or name[:5].lower() != "nats-":
            break
        if value.__class__ is not str or (not checked and HEADER_TOKEN.fullmatch(name) is None):
            return None
        end -= 1
    if ce_id.__class__ is not str or ce_time.__class__ is not str:
        return None
    return ce_id, ce_time, items[2:end]


class Repeats:
    """The envelopes seen before, by the key `split` gives (bounded: see `_CAP`)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[tuple[str, str], ...], Repeat] = {}

    def get(self, key: tuple[tuple[str, str], ...]) -> Repeat | None:
        """The entry for ``key``, or None (a key that cannot be hashed has none)."""
        try:
            return self._seen.get(key)
        except TypeError:  # an unhashable value: only the full decoder can say what is wrong
            return None

    def learn(
        self,
        key: tuple[tuple[str, str], ...],
        fields: dict[str, Any],
        *,
        content_type: str,
        size: int,
        ce_id: str,
        ce_time: str,
        body: bytes,
    ) -> None:
        """Keep what the full decoder made of a block (``fields``: the message's fields).

        Args:
            key: The block's key (`split`).
            fields: The decoded message's fields (copied).
            content_type: The body's content type.
            size: The message's size as the decoder counted it (headers and body).
            ce_id: The block's ``ce-id`` as it came.
            ce_time: Its ``ce-time`` as it came.
            body: The message's body.
        """
        if any(fields[name] for name in _ONE_OFF_FIELDS):
            return  # it names another message (a reply): its envelope will not come again
        # The varying values' share of the size is their length only if the decoder read
        # them as they came (ASCII, nothing stripped); otherwise the rest's share is unknown.
        if not (ce_id.isascii() and ce_time.isascii()):
            return
        if ce_id.strip(" \t") != ce_id or ce_time.strip(" \t") != ce_time:
            return
        try:
            hash(key)
        except TypeError:
            return
        if len(self._seen) >= _CAP:
            self._seen.clear()
        kept = dict(fields)
        kept["payload"] = None  # each message decodes its own body; keep none alive here
        # The message decoded first owns its dicts (its handler may change them): not these.
        kept["extensions"] = dict(fields["extensions"])
        kept["headers"] = dict(fields["headers"])
        rest = size - len(body) - 12 - varying_size(ce_id, ce_time)
        self._seen[key] = Repeat(
            kept, content_type, rest, bool(fields["extensions"] or fields["headers"])
        )

    def __len__(self) -> int:
        return len(self._seen)

    def clear(self) -> None:
        """Forget every envelope."""
        self._seen.clear()


def varying_size(ce_id: str, ce_time: str) -> int:
    """The share of `encoded_size` of the two varying headers (ASCII values)."""
    return _VARYING_OVERHEAD + len(ce_id) + len(ce_time)
