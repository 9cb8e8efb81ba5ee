"""Group membership: who is in which multicast group, kept in the backend's key-value store.

One bucket per bus namespace (``{prefix}-groups``), a key ``{group}.{agent}`` per member.
`aclbus.Agent.join` and `aclbus.Agent.leave` write it; `aclbus.Bus.group_members` (and so
`aclbus.Bus.gather` to a group) reads it.
"""

from __future__ import annotations

import logging

from aclbus.backend import Backend, KeyValue, KVSpec
from aclbus.errors import CapabilityError, InvalidIdentifier
from aclbus.settings import Settings
from aclbus.subjects import Subjects, validate_id

__all__ = ["GroupMembership"]

log = logging.getLogger("aclbus")


class GroupMembership:
    """The group membership of one bus' namespace.

    Args:
        backend: The bus' backend (it must have a key-value store).
        subjects: The bus' subjects (the bucket's name).
        settings: The bus' settings (the bucket's replicas and storage).
    """

    def __init__(self, backend: Backend, subjects: Subjects, settings: Settings) -> None:
        self._backend = backend
        self._subjects = subjects
        self._settings = settings
        self._kv: KeyValue | None = None

    async def bucket(self) -> KeyValue:
        """The bucket, provisioned on first use.

        Raises:
            CapabilityError: The backend has no key-value store.
        """
        if not self._backend.capabilities.kv:
            raise CapabilityError("groups", self._backend.name, ["kv"])
        if self._kv is None:
            name = self._subjects.bucket("groups")
            limits = self._settings.streams
            await self._backend.provision(
                KVSpec(
                    bucket=name,
                    replicas=limits.replicas,
                    storage="memory" if limits.storage == "memory" else "file",
                )
            )
            self._kv = await self._backend.kv(name)
        return self._kv

    async def members(self, group: str) -> list[str]:
        """The ids of the agents that are members of ``group`` now, sorted.

        Raises:
            InvalidIdentifier: ``group`` is not a valid id.
            CapabilityError: The backend has no key-value store.
        """
        validate_id(group, "group")
        kv = await self.bucket()
        prefix = f"{group}."
        members = []
        for key in await kv.keys():
            if key.startswith(prefix):
                try:
                    members.append(validate_id(key[len(prefix) :]))
                except InvalidIdentifier:  # written by some other client: not an agent of ours
                    log.warning("group %s: ignoring member key %r (not an agent id)", group, key)
        return sorted(members)

    def forget(self) -> None:
        """Let go of the bucket's handle (the bus stopped: its connection is closed)."""
        self._kv = None
