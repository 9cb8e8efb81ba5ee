"""The CloudEvents attributes of a message: the spec version, and the performative as a type.

A message's ``ce-type`` is `CE_TYPE_PREFIX` and its performative (``fipa.acl.inform``).
"""

from __future__ import annotations

from typing import Final

from aclbus.acl import Performative

__all__ = ["CE_SPECVERSION", "CE_TYPE_PREFIX", "PERFORMATIVE_BY_TYPE", "TYPE_BY_PERFORMATIVE"]

CE_SPECVERSION: Final = "1.0"
CE_TYPE_PREFIX: Final = "fipa.acl."

PERFORMATIVE_BY_TYPE: Final = {CE_TYPE_PREFIX + p.value: p for p in Performative}
"""The performative of each ``ce-type``."""
TYPE_BY_PERFORMATIVE: Final = {p: t for t, p in PERFORMATIVE_BY_TYPE.items()}
"""The ``ce-type`` of each performative."""
