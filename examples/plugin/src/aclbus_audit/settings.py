"""The plugin's settings: ``ACLBUS_AUDIT__*`` variables and the ``[audit]`` table of aclbus.toml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aclbus import Performative
from aclbus.settings import CommaList, SectionSettings, section_config

__all__ = ["AuditSettings"]


class AuditSettings(SectionSettings):
    """What the audit log records, and where.

    Attributes:
        performatives: Only messages of these performatives; empty: all.
        level: The log level of each line.
        logger: The name of the logger the lines go to.
    """

    model_config = section_config("audit")

    performatives: CommaList = Field(default_factory=list)
    level: Literal["debug", "info", "warning"] = "info"
    logger: str = "aclbus.audit"

    def wanted(self) -> frozenset[Performative] | None:
        """The performatives to record; None: all. Raises ValueError for an unknown one."""
        return frozenset(Performative(p) for p in self.performatives) or None
