"""The size of a message on the NATS wire: what ``max_payload`` and ``max_bytes`` limit."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["encoded_size"]


def encoded_size(headers: Mapping[str, str], body: bytes) -> int:
    r"""The size of a message on the NATS wire: body plus the header block.

    This is the ``<total bytes>`` of the ``HPUB`` frame, the number NATS' ``max_payload``
    limits: ``NATS/1.0\r\n``, then ``name: value\r\n`` per header, then ``\r\n``,
    then the body. Header names and values are counted in UTF-8 bytes.
    """
    text = "".join(headers) + "".join(headers.values())
    chars = len(text) if text.isascii() else len(text.encode(errors="replace"))
    return len(body) + 12 + 4 * len(headers) + chars
