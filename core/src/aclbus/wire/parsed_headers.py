"""`ParsedHeaders`: the headers a backend read from a raw block, with the defect found in it.

A module of its own so that the modules of the wire format can be compiled with mypyc (see
``docs/compiled-evaluation.md``) while this class stays a plain Python class: mypyc makes a
compiled class's attributes per instance, so the class default of `ParsedHeaders.defect`
would be missing on a block made by ``dict``'s own constructor.
"""

from __future__ import annotations

from aclbus.errors import MalformedHeaders

__all__ = ["ParsedHeaders"]


class ParsedHeaders(dict[str, str]):
    """Headers a backend read from a raw header block, with the first defect found in it.

    A mapping of names to values cannot show everything a block can hold: two lines of one
    name in one case (a dict keeps one value), a name that is not text (a dict has no key for
    it), a line that is no header. A backend that reads blocks itself returns this type and
    sets `defect` to the first such problem; `decode` then refuses the message with it. The
    mapping holds the headers as the backend's client library reads them (for NATS: the last
    of repeated names wins, invalid names are left out). A backend returning this type
    promises that, unless `defect` is set, every name in it is a token (`HEADER_TOKEN`):
    `decode` does not check them again.

    Attributes:
        defect: What is wrong with the block, or None.
    """

    defect: MalformedHeaders | None = None  # a class default: most blocks have none
