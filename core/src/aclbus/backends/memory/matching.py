"""Where the subject-filter checks were: they are in `aclbus.subjects` now, for every backend.

This module keeps their old import path; import them from `aclbus.subjects`.
"""

from __future__ import annotations

from aclbus.subjects import check_filter, check_subject, covers, overlaps

__all__ = ["check_filter", "check_subject", "covers", "overlaps"]
