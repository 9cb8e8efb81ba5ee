"""aclbus-auth.

Who a bus connects as, and what each agent may do: credentials, the policy, its rendering into
server permissions (SPEC R9, R11).
"""

from __future__ import annotations

__all__: list[str] = []
