"""NATS header blocks, read and written faster than nats-py does, and read more strictly.

nats-py 2.16 spends more on an aclbus message's eight or so headers than on the rest of the
message: reading, it tests each character of each name with ``str.isspace`` in a generator;
writing, it runs a regular expression, two strips, a translation and two encodes per header.
The backend installs `read_header_block` (as nats-py's ``_process_headers``) and
`send_publish` on its own connection. They give nats-py's own result (tests compare them on
random input), and the reader adds what nats-py's dict cannot show: a header of the envelope
given twice (nats-py keeps the last: a second ``ce-source`` would pass as the sender), a name
that is not a token (nats-py drops it), a line that is no header, a status line. The headers
come as `NatsHeaders`, an `aclbus.wire.ParsedHeaders` whose ``defect`` `aclbus.wire.decode`
refuses, and whose ``status`` marks a status frame (``NATS/1.0 503``), which is no message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aclbus.errors import MalformedHeaders
from aclbus.wire import ParsedHeaders, header_name_error, repeated_header_error
from aclbus_nats.repeats import BlockReader, BlockWriter

if TYPE_CHECKING:
    from nats.aio.client import Client

log = logging.getLogger("aclbus.nats")

__all__ = [
    "NatsHeaders",
    "header_block",
    "install",
    "parse_header_lines",
    "process_headers",
    "read_header_block",
]

_CRLF = b"\r\n"
_NAME_SPACE = re.compile(rb"[\t-\r\x1c- ]")
"""The ASCII characters `str.isspace` is true for: none may be in a header name."""
_NATS_LINE = b"NATS/1.0\r\n"  # 10 bytes
_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_TOKEN = re.compile(_TCHAR + b"+")
# names joined by ":" (possessive: a name that fails does not make it backtrack)
_TOKEN_LIST = re.compile(f"{_TCHAR.decode()}++(?::{_TCHAR.decode()}++)*+")


class NatsHeaders(ParsedHeaders):
    """The headers of a NATS message as read from its header block.

    Attributes:
        defect: What is wrong with the block, or None (see `aclbus.wire.ParsedHeaders`).
        status: For a status frame (``NATS/1.0 503``, ``NATS/1.0 100 Idle Heartbeat``), its
            status code as written; None for a message.
    """

    status: str | None = None


def read_header_block(block: bytes) -> NatsHeaders | None:
    r"""A message's whole header block (from ``NATS/1.0``), as nats-py reads it, checked.

    The mapping is nats-py's (``Client._process_headers``): the last of a repeated name wins,
    a name that is not ASCII or holds whitespace is left out, values are stripped and read as
    UTF-8 with replacement, an empty block is None. Besides, ``defect`` names the first of:
    a header given more than once in one case (of the envelope, or with different values), a
    name that is not a token, a line with no ``:``, a first line that is not ``NATS/1.0``; and
    ``status`` is set for a status line. (Names differing only in case are two keys, for
    `aclbus.wire.decode` to judge.) A block with a defect is never None, even when nothing in
    it could be read.
    """
    if block.startswith(_NATS_LINE):
        seen = _READER.read(block)
        if seen is not None:
            return seen  # type: ignore[no-any-return]
        headers = parse_header_lines(block[10:])
        return headers if headers or headers.defect is not None else None
    if block[8:9] == b" ":
        lines = parse_header_lines(block.partition(_CRLF)[2])
        code = block[9:12].strip()
        if code.isdigit():  # as nats-py reads a status: three characters
            lines["Status"] = code.decode("ascii")
        return _status_frame(block, lines)
    odd = NatsHeaders(parse_header_lines(block[10:]))
    odd.defect = MalformedHeaders(
        "headers", f"the header block starts with {_shown(block[:10])!r}, not 'NATS/1.0'"
    )
    return odd


def _status_frame(block: bytes, headers: dict[str, str]) -> NatsHeaders:
    """``headers`` marked as the status frame ``block`` is (``NATS/1.0 <status> ...``)."""
    frame = NatsHeaders(headers)
    status = block.partition(_CRLF)[0][9:].partition(b" ")[0]
    frame.status = _shown(status[:16])
    frame.defect = MalformedHeaders(
        "headers", f"a NATS status frame ({frame.status or 'no code'}), not a message"
    )
    return frame


def parse_header_lines(raw: bytes) -> NatsHeaders:
    r"""A header block's ``Name: Value\r\n`` lines, as nats-py reads them, checked.

    nats-py 2.16's ``Client._parse_header_lines`` tests each character of each name with
    ``str.isspace`` in a generator: about 5.5 µs for an aclbus message's eight headers, more
    than the rest of nats-py's work on the message. This one gives the same mapping (a name
    that is not ASCII or holds whitespace is skipped, the last of a repeated name wins,
    values are stripped and decoded as UTF-8 with replacement) for a fraction of that, and
    checks the block (see `read_header_block`). The usual block (ASCII, one line per header,
    the names tokens, none repeated) is decoded once, not line by line, checked with a few
    string operations on all its names at once; anything else is read line by line.
    """
    if raw.isascii():
        text = raw.decode("ascii")
        lines = [line.partition(":") for line in text.split("\r\n")]
        out = {name: value.strip(_BYTES_SPACE) for name, sep, value in lines if sep}
        # One line per name, each line a header (the block ends with an empty line) and
        # every name a token: nothing nats-py would strip or skip, nothing to refuse. (One
        # regular expression over the names costs less here than string methods: each of
        # those is a pass over them too.)
        if (
            len(out) == len(lines) - 2  # (the two empty strings after the final "\r\n\r\n")
            and text.endswith("\r\n\r\n")
            and _TOKEN_LIST.fullmatch(":".join(out)) is not None  # no name holds a ":"
        ):
            return NatsHeaders(out)  # checked: decode need not look at its names again
    headers = NatsHeaders(_parse_bytes(raw))
    headers.defect = _defect(raw)
    return headers


def _defect(raw: bytes) -> MalformedHeaders | None:
    """The first line of ``raw`` that breaks a rule of the wire format's header block.

    Only what the mapping cannot show: names that differ in case are two keys of it, which
    `aclbus.wire.decode` judges itself.
    """
    seen: dict[bytes, str] = {}
    for line in raw.split(_CRLF):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            return MalformedHeaders("headers", f"a line with no ':' is no header: {_shown(line)!r}")
        if _TOKEN.fullmatch(name) is None:
            return header_name_error(_shown(name))
        text = value.strip().decode("utf-8", "replace")
        first = seen.get(name)
        if first is None:
            seen[name] = text
            continue
        error = repeated_header_error(name.decode("ascii").lower(), first, text)
        if error is not None:
            return error
    return None


def _shown(raw: bytes) -> str:
    r"""``raw`` (cut to 64 bytes) in printable ASCII, other bytes as ``\xNN``."""
    return "".join(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in raw[:64])


# What bytes.strip() strips (str.strip() strips more: \x1c-\x1f too), and what str.isspace
# is true for in ASCII (which nats-py refuses in a name).
_BYTES_SPACE = " \t\n\r\x0b\x0c"


def _parse_bytes(raw: bytes) -> dict[str, str]:
    """nats-py's reading, line by line."""
    out: dict[str, str] = {}
    for line in raw.split(_CRLF):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = name.strip()
        if key.isascii() and _NAME_SPACE.search(key) is None:
            out[key.decode("ascii")] = value.strip().decode("utf-8", "replace")
    return out


# Names as nats-py accepts them (its _HEADER_KEY_RE), values printable ASCII without spaces
# at either end and without CR/LF (nats-py would strip or replace those): for such headers the
# block below is byte for byte what nats-py writes. Checked on the joined text in one scan.
_NAMES = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:\x00[!#$%&'*+\-.^_`|~0-9A-Za-z]+)*")
_VALUES = re.compile(r"(?:[!-~](?:[ -~]*[!-~])?)?(?:\x00(?:[!-~](?:[ -~]*[!-~])?)?)*")


def header_block(headers: dict[str, Any]) -> bytes | None:
    r"""The ``NATS/1.0\r\n`` header block of ``headers``, or None if nats-py must write it.

    None for anything unusual (a name nats-py refuses, a value with spaces at an end, a
    control character, non-ASCII text, a non-string): nats-py's own writer then handles it,
    errors included.
    """
    if not headers:
        return None
    try:
        names = "\x00".join(headers)
        values = "\x00".join(headers.values())
    except TypeError:
        return None
    separators = len(headers) - 1
    if names.count("\x00") != separators or values.count("\x00") != separators:
        return None  # a NUL inside a name or value: the checks below would read it as a separator
    if not (_usual_names(names) or _NAMES.fullmatch(names)) or not (
        _usual_values(values) or _VALUES.fullmatch(values)
    ):
        return None
    # join, not an f-string: nats-py passes str enums as names (api.Header), whose format()
    # would be their member name rather than their text
    lines = "\r\n".join(map(": ".join, headers.items()))
    return ("NATS/1.0\r\n" + lines + "\r\n\r\n").encode("ascii")


def _usual_names(names: str) -> bool:
    """Every NUL-separated name is 1+ ASCII letters, digits or ``-`` (what aclbus writes).

    A few string methods instead of the regular expressions, which cost more than the rest
    of writing the block; False sends the names to the regular expression.
    """
    bare = names.replace("-", "").replace("\x00", "")
    return (
        bare.isascii()
        and bare.isalnum()
        and "\x00\x00" not in names
        and names[0] != "\x00"
        and names[-1] != "\x00"
    )


def _usual_values(values: str) -> bool:
    """Every NUL-separated value is printable ASCII without a space at either end."""
    return (
        values.isascii()
        and values.replace("\x00", "").isprintable()
        and " \x00" not in values
        and "\x00 " not in values
        and not values.startswith(" ")
        and not values.endswith(" ")
    )


SendPublish = Callable[[str, str, bytes, int, Any], Awaitable[None]]


def install(nc: Client) -> None:
    """Put the checking header reader and the faster writer on the connection ``nc``.

    For nats-py 2.16: its private methods are left alone if they are not what they were
    (another version), with a warning, since the reader's checks are then missing.
    """
    # nats-py reads and writes header blocks only in these private methods, with no public
    # hook: replacing them on this one client is the only way to check or speed them up.
    if callable(getattr(nc, "_parse_header_lines", None)):
        nc._parse_header_lines = parse_header_lines  # type: ignore[method-assign]  # noqa: SLF001
    process = getattr(nc, "_process_headers", None)
    if callable(process):
        nc._process_headers = process_headers(process)  # type: ignore[method-assign,assignment]  # noqa: SLF001
    else:
        log.warning(
            "nats-py has no Client._process_headers: header blocks are read by nats-py, "
            "without aclbus' checks for repeated envelope headers and invalid names"
        )
    original = getattr(nc, "_send_publish", None)
    if callable(original) and callable(getattr(nc, "_send_command", None)):
        nc._send_publish = send_publish(nc, original)  # type: ignore[method-assign,assignment]  # noqa: SLF001


ProcessHeaders = Callable[[bytes | None], Awaitable[dict[str, str] | None]]


def process_headers(original: ProcessHeaders) -> ProcessHeaders:
    """nats-py's ``_process_headers`` replaced by `read_header_block`.

    A block with a status line is read by ``original`` (nats-py's own reading, which its
    heartbeats, flow control and "no responders" rely on) and marked as the status frame it
    is (`NatsHeaders.status`), so that no subscription takes it for a message. Where nats-py
    fails on one (a status or description that is not UTF-8), it is read here instead: an
    exception would end nats-py's reading task, and any peer can publish such a frame.
    """

    async def process(block: bytes | None) -> dict[str, str] | None:
        if not block:
            return None
        if block[8:9] != b" ":
            return read_header_block(block)
        try:
            headers = await original(block)
        except Exception:
            return read_header_block(block)
        return _status_frame(block, headers or {})

    return process


def send_publish(nc: Client, original: SendPublish) -> SendPublish:
    """nats-py's ``_send_publish`` for ``nc``, writing usual header blocks in one step."""
    from nats.protocol.command import hpub_cmd

    async def send(
        subject: str, reply: str, payload: bytes, payload_size: int, headers: Any
    ) -> None:
        block = None
        if headers is not None and subject:
            block = _WRITER.write(headers) or header_block(headers)
        if block is None:
            await original(subject, reply, payload, payload_size, headers)
            return
        # What nats-py's own _send_publish does after making its block, on its private
        # write path (there is no public one below ``publish``).
        nc.stats["out_msgs"] += 1
        nc.stats["out_bytes"] += payload_size
        await nc._send_command(hpub_cmd(subject, reply, block, payload))  # noqa: SLF001
        flush_queue = nc._flush_queue  # noqa: SLF001
        if flush_queue is not None and flush_queue.empty():
            await nc._flush_pending()  # noqa: SLF001

    return send


# Blocks of aclbus' own shape, read and written once per envelope (`aclbus_nats.repeats`).
_READER = BlockReader(parse_header_lines, NatsHeaders)
_WRITER = BlockWriter(header_block)
