"""Envelopes seen before: the headers that repeat from message to message, parsed once.

Most of an envelope repeats between the messages of one sender to one receiver: who sends, to
whom, the performative, the type, the codec. What changes with every message is its id and
its time, and, in a conversation, the headers naming one conversation or message
(`VARYING_HEADERS`); the broker's ``nats-*`` headers, which decoding ignores, change too.
`encode` writes the varying headers first, so the rest of a block is a tuple of header items
that compares equal whenever the same envelope comes again. `Repeats` keeps what decoding
made of it (every field but the varying ones and the payload), and a message whose rest was
seen before costs a dictionary lookup, the parsing of its varying headers and its body.

Nothing is trusted that was not checked: an entry is made from a message the full decoder
accepted, its key holds every other header that decoder read (names and values as they
came), and what a block has that the entry does not vouch for (the varying headers, the
trailing ``nats-*`` ones) is checked again, or the block goes the full way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from aclbus.wire.header_block import HEADER_TOKEN
from aclbus.wire.parsed_headers import ParsedHeaders

__all__ = ["VARYING_HEADERS", "Repeat", "Repeats", "split"]

VARYING_HEADERS: Final = (
    "ce-id",
    "ce-time",
    "acl-correlation-id",
    "acl-reply-with",
    "acl-in-reply-to",
    "acl-caused-by",
    "acl-reply-by",
)
"""The headers that change from message to message, in the order `encode` writes them."""
_VARYING: Final = frozenset(VARYING_HEADERS)
_CAP: Final = 4096
"""Envelopes kept; a full table starts again (the ones in use come back) rather than grow."""

Items = tuple[tuple[str, str], ...]


class Repeat(NamedTuple):
    """What decoding made of an envelope's repeating headers.

    Attributes:
        fields: Every field of the message but the payload, which is None here; the fields
            of the varying headers hold the first message's values, always replaced.
        content_type: The body's content type (``content-type``, or the default).
        size: The repeating headers' share of `encoded_size`.
        copies: Whether ``extensions`` or ``headers`` hold anything (a message gets copies:
            a handler may change its own).
        varying: The names of the varying headers the first message had, in order: a
            message with others is decoded the full way.
    """

    fields: dict[str, Any]
    content_type: str
    size: int
    copies: bool
    varying: tuple[str, ...]


def split(headers: Mapping[str, str]) -> tuple[Items, Items] | None:
    """``(varying, key)`` of a block in `encode`'s order, or None for any other.

    ``varying`` is the run of `VARYING_HEADERS` the block starts with (``ce-id`` and
    ``ce-time`` first); the key is every header after it but the ``nats-*`` ones at the end
    (the broker's ``Nats-Msg-Id`` and ``Nats-TTL``), which are checked here as decoding would
    check them: text, and for a mapping that is no `ParsedHeaders`, a token for a name.
    """
    items = tuple(headers.items())
    if len(items) < 3 or items[0][0] != "ce-id" or items[1][0] != "ce-time":
        return None
    start = 2
    end = len(items)
    while start < end and items[start][0] in _VARYING:
        start += 1
    checked = isinstance(headers, ParsedHeaders)  # its backend checked every name
    while end > start:
        name, value = items[end - 1]
        if name.__class__ is not str or name[:5].lower() != "nats-":
            break
        if value.__class__ is not str or (not checked and HEADER_TOKEN.fullmatch(name) is None):
            return None
        end -= 1
    if start == end:
        return None  # nothing repeats
    return items[:start], items[start:end]


def varying_size(varying: Items) -> int:
    """The share of `encoded_size` of the varying headers (ASCII values)."""
    return sum(4 + len(name) + len(value) for name, value in varying)


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
        varying: Items,
        key: Items,
        fields: dict[str, Any],
        *,
        content_type: str,
        size: int,
        body: bytes,
    ) -> None:
        """Keep what the full decoder made of a block (``fields``: the message's fields).

        Args:
            varying: The block's varying headers (`split`).
            key: The block's key (`split`).
            fields: The decoded message's fields (copied).
            content_type: The body's content type.
            size: The message's size as the decoder counted it (headers and body).
            body: The message's body.
        """
        # The varying values' share of the size is their length only if the decoder read
        # them as they came (ASCII, nothing stripped); otherwise the rest's share is unknown.
        for _, value in varying:
            if not value.isascii() or value.strip(" \t") != value:
                return
        for name, _ in key:
            if name.__class__ is not str or name.lower() in _VARYING:
                return  # a varying header among the others: that key would not come again
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
        self._seen[key] = Repeat(
            kept,
            content_type,
            size - len(body) - 12 - varying_size(varying),
            bool(fields["extensions"] or fields["headers"]),
            tuple(name for name, _ in varying),
        )

    def __len__(self) -> int:
        return len(self._seen)

    def clear(self) -> None:
        """Forget every envelope."""
        self._seen.clear()
