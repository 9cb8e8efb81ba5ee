r"""Header blocks seen before: the lines that repeat, read and written once.

`aclbus.wire.encode` writes ``ce-id`` and ``ce-time`` first, and the backend adds its
``Nats-*`` headers (``Nats-Msg-Id``, ``Nats-TTL``) last: those are the only lines of an aclbus
block that change from one message of a sender to the next. `BlockReader` keeps, by the bytes
of the lines between them, the headers `aclbus_nats.headers.parse_header_lines` read from
them; `BlockWriter` keeps, by those headers, the bytes it wrote. A block seen before then
costs the reading or writing of its two or three varying lines and a dictionary lookup.

Nothing is kept that the full reader or writer did not accept as usual (a block without a
defect, names and values nats-py reads and writes as they are), and the varying lines are
checked as the full reader or writer checks them; anything else goes the full way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

__all__ = ["BlockReader", "BlockWriter"]

_CAP: Final = 4096
"""Blocks kept by each table; a full one starts again (the blocks in use come back)."""
_HEAD: Final = b"NATS/1.0\r\nce-id: "
_TIME: Final = b"ce-time: "
_CRLF: Final = b"\r\n"
_SERVER_LINE: Final = b"\r\nNats-"
_SPACE: Final = " \t\n\r\x0b\x0c"  # what the full reader strips (bytes.strip())
_ONE_OFF: Final = frozenset({"acl-caused-by", "acl-in-reply-to", "acl-reply-by"})
"""Headers that name one other message or moment: a block with one is not kept (replies would
fill the table with blocks that never come again, and empty it of those that do)."""

Items = tuple[tuple[str, str], ...]


class BlockReader:
    r"""Reads header blocks, keeping what it made of the lines that repeat.

    Args:
        read_lines: The full reader of a block's lines (what follows ``NATS/1.0\r\n``): a
            mapping with a ``defect`` attribute (`aclbus.wire.ParsedHeaders`).
        make: Makes the reader's mapping from ``(name, value)`` pairs.
    """

    def __init__(self, read_lines: Callable[[bytes], Any], make: Callable[[Items], Any]) -> None:
        self._read_lines = read_lines
        self._make = make
        self._seen: dict[bytes, Items] = {}

    def read(self, block: bytes) -> Any | None:
        r"""The headers of ``block`` (from ``NATS/1.0\r\n``), or None: read it the full way.

        Only a block of aclbus' shape is read here: ``ce-id`` and ``ce-time`` first, at least
        one line after them, ``Nats-*`` lines (if any) last.
        """
        if not block.startswith(_HEAD) or not block.endswith(b"\r\n\r\n"):
            return None
        id_end = block.find(_CRLF, 17)
        time_start = id_end + 2
        if id_end < 0 or not block.startswith(_TIME, time_start):
            return None
        time_end = block.find(_CRLF, time_start + 9)
        rest_start = time_end + 2
        tail = block.find(_SERVER_LINE, time_end)
        if time_end < 0 or tail == time_end or rest_start >= len(block) - 2:
            return None  # no line between the varying ones and the end: nothing to keep
        raw_id = block[17:id_end]
        raw_time = block[time_start + 9 : time_end]
        if not (raw_id.isascii() and raw_time.isascii()):
            return None
        ce_id = raw_id.decode("ascii").strip(_SPACE)
        ce_time = raw_time.decode("ascii").strip(_SPACE)
        if not (ce_id and ce_time):
            return None
        server: Items = ()
        rest_end = len(block) - 2
        if tail >= 0:
            rest_end = tail + 2
            found = _server_lines(block[rest_end:-2])
            if found is None:
                return None
            server = found
        rest = block[rest_start:rest_end]
        items = self._seen.get(rest)
        if items is None:
            items = self._learn(block, rest)
            if items is None:
                return None
        return self._make((("ce-id", ce_id), ("ce-time", ce_time), *items, *server))

    def _learn(self, block: bytes, rest: bytes) -> Items | None:
        """Read the repeating lines the full way, and keep them if nothing there is unusual."""
        whole = self._read_lines(block[10:])
        lines = self._read_lines(rest + _CRLF)
        if whole.defect is not None or lines.defect is not None:
            return None
        names = [name.lower() for name in lines]
        if "ce-id" in names or "ce-time" in names or any(n.startswith("nats-") for n in names):
            return None  # the rest read alone could hide a name the whole block repeats
        if not _ONE_OFF.isdisjoint(names):
            return None  # a reply's block: it will not come again (see _ONE_OFF)
        items: Items = tuple(lines.items())
        if len(whole) != 2 + len(items) + sum(1 for n in whole if n.startswith("Nats-")):
            return None  # a line given twice, which the whole block read as one
        if len(self._seen) >= _CAP:
            self._seen.clear()
        self._seen[rest] = items
        return items


def _server_lines(raw: bytes) -> Items | None:
    r"""The ``Nats-*`` lines at the end of a block (``raw``: each ends ``\r\n``), or None.

    None unless every line is ``Nats-<letters, digits, ->: <printable ASCII>``, each name
    once: anything else is read the full way.
    """
    if not raw.isascii():
        return None
    out: list[tuple[str, str]] = []
    for line in raw.decode("ascii").split("\r\n")[:-1]:
        name, sep, value = line.partition(":")
        bare = name[5:].replace("-", "")
        value = value.strip(_SPACE)
        if not (sep and name.startswith("Nats-") and bare.isalnum() and value.isprintable()):
            return None
        out.append((name, value))
    if len({name for name, _ in out}) != len(out):
        return None
    return tuple(out)


class BlockWriter:
    """Writes header blocks, keeping the bytes of the lines that repeat.

    Args:
        write: The full writer: the block of a dict of headers, or None when nats-py must
            write it (`aclbus_nats.headers.header_block`).
    """

    def __init__(self, write: Callable[[dict[str, Any]], bytes | None]) -> None:
        self._write = write
        self._seen: dict[Items, bytes] = {}

    def write(self, headers: dict[str, Any]) -> bytes | None:
        """The block of ``headers``, as the full writer writes it; None if not aclbus' shape.

        None also for anything the full writer would not write: the caller asks it then.
        """
        items = tuple(headers.items())
        if len(items) < 3 or items[0][0] != "ce-id" or items[1][0] != "ce-time":
            return None
        end = len(items)
        while end > 3 and items[end - 1][0].__class__ is str and items[end - 1][0][:5] == "Nats-":
            end -= 1
        ce_id, ce_time = items[0][1], items[1][1]
        server = items[end:]
        if not (_plain(ce_id) and _plain(ce_time)) or not all(
            name[5:].replace("-", "").isalnum() and name.isascii() and _plain(value)
            for name, value in server
        ):
            return None  # the full writer checks and writes them
        key = items[2:end]
        try:
            rest = self._seen.get(key)
        except TypeError:  # an unhashable value: the full writer refuses it
            return None
        if rest is None:
            if any(name in _ONE_OFF for name, _ in key):
                return None  # a reply's block: the full writer writes it (see _ONE_OFF)
            whole = self._write(dict(key))
            if whole is None:
                return None
            rest = whole[10:-2]  # its lines, each with its CRLF
            if len(self._seen) >= _CAP:
                self._seen.clear()
            self._seen[key] = rest
        head = f"NATS/1.0\r\nce-id: {ce_id}\r\nce-time: {ce_time}\r\n".encode("ascii")
        if not server:
            return head + rest + _CRLF
        lines = "".join([f"{name}: {value}\r\n" for name, value in server])
        return head + rest + lines.encode("ascii") + _CRLF


def _plain(value: Any) -> bool:
    """Whether the full writer writes ``value`` as it is: printable ASCII, no space at an end."""
    return (
        value.__class__ is str
        and value.isascii()
        and value.isprintable()
        and not value.startswith(" ")
        and not value.endswith(" ")
    )
