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

from aclbus.wire import VARYING_HEADERS

__all__ = ["BlockReader", "BlockWriter"]

_CAP: Final = 4096
"""Blocks kept by each table; a full one starts again (the blocks in use come back)."""
_HEAD: Final = b"NATS/1.0\r\nce-id:"
_CRLF: Final = b"\r\n"
_SERVER_LINE: Final = b"\r\nNats-"
_SPACE: Final = " \t\n\r\x0b\x0c"  # what the full reader strips (bytes.strip())
_VARYING_TEXT: Final = frozenset(VARYING_HEADERS)
"""The headers that change from message to message (`aclbus.wire.VARYING_HEADERS`)."""
_VARYING: Final = frozenset(name.encode("ascii") for name in VARYING_HEADERS)

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

        Only a block of aclbus' shape is read here: the varying lines first (``ce-id``,
        ``ce-time``, then any other of `aclbus.wire.VARYING_HEADERS`), at least one line
        after them, ``Nats-*`` lines (if any) last.
        """
        if not block.startswith(_HEAD) or not block.endswith(b"\r\n\r\n"):
            return None
        end = len(block) - 2  # the empty line that ends the block
        varying: list[tuple[str, str]] = []
        pos = 10
        while pos < end:
            line_end = block.find(_CRLF, pos)
            colon = block.find(b":", pos, line_end)
            name = block[pos:colon] if colon >= 0 else b""
            if name not in _VARYING:
                break
            raw = block[colon + 1 : line_end]
            if not raw.isascii():
                return None
            value = raw.decode("ascii").strip(_SPACE)
            if not value:
                return None
            varying.append((name.decode("ascii"), value))
            pos = line_end + 2
        if len(varying) < 2 or varying[1][0] != "ce-time" or pos >= end:
            return None  # not aclbus' shape, or nothing after the varying lines
        if len({name for name, _ in varying}) != len(varying):
            return None  # a varying header twice: the full reader names the defect
        tail = block.find(_SERVER_LINE, pos - 2)
        if tail == pos - 2:
            return None  # the server's lines right after the varying ones: nothing repeats
        server: Items = ()
        rest_end = end
        if tail >= 0:
            rest_end = tail + 2
            found = _server_lines(block[rest_end:end])
            if found is None:
                return None
            server = found
        rest = block[pos:rest_end]
        items = self._seen.get(rest)
        if items is None:
            items = self._learn(block, rest, len(varying))
            if items is None:
                return None
        return self._make((*varying, *items, *server))

    def _learn(self, block: bytes, rest: bytes, varying: int) -> Items | None:
        """Read the repeating lines the full way, and keep them if nothing there is unusual."""
        whole = self._read_lines(block[10:])
        lines = self._read_lines(rest + _CRLF)
        if whole.defect is not None or lines.defect is not None:
            return None
        for name in lines:
            lower = name.lower()
            if lower in _VARYING_TEXT or lower.startswith("nats-"):
                # Read alone, the rest could hide a name the whole block repeats; and a
                # varying header among the others would make a block that never comes again.
                return None
        items: Items = tuple(lines.items())
        if len(whole) != varying + len(items) + sum(1 for n in whole if n.startswith("Nats-")):
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
        start, end = 2, len(items)
        while start < end and items[start][0] in _VARYING_TEXT:
            start += 1
        while (
            end > start and items[end - 1][0].__class__ is str and items[end - 1][0][:5] == "Nats-"
        ):
            end -= 1
        if start == end:
            return None
        varying, server = items[:start], items[end:]
        if not all(name.__class__ is str and _plain(value) for name, value in varying) or not all(
            name[5:].replace("-", "").isalnum() and name.isascii() and _plain(value)
            for name, value in server
        ):
            return None  # the full writer checks and writes them
        key = items[start:end]
        try:
            rest = self._seen.get(key)
        except TypeError:  # an unhashable value: the full writer refuses it
            return None
        if rest is None:
            if any(name.__class__ is not str or name.lower() in _VARYING_TEXT for name, _ in key):
                return None  # a varying header among the others: the key would not come again
            whole = self._write(dict(key))
            if whole is None:
                return None
            rest = whole[10:-2]  # its lines, each with its CRLF
            if len(self._seen) >= _CAP:
                self._seen.clear()
            self._seen[key] = rest
        head = "".join([f"{name}: {value}\r\n" for name, value in varying])
        tail = "".join([f"{name}: {value}\r\n" for name, value in server])
        return b"NATS/1.0\r\n" + head.encode("ascii") + rest + tail.encode("ascii") + _CRLF


def _plain(value: Any) -> bool:
    """Whether the full writer writes ``value`` as it is: printable ASCII, no space at an end."""
    return (
        value.__class__ is str
        and value.isascii()
        and value.isprintable()
        and not value.startswith(" ")
        and not value.endswith(" ")
    )
