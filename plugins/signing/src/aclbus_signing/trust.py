"""Whose keys are whose: the pinned key file and the directory.

The **pinned key file** is TOML, one entry per agent id, each a key id or a list of them
(NKey user public keys ``U…`` are accepted and read as key ids):

```toml
alice = ["nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"]
bob = [
  "WuqTM0wSD7tSjK5RMQyzckKpnqbnp-G9_lrUafoGp5I",  # the old key, until every bob restarts
  "UCK4WPZ4MEAFOBSSJBTRGB4X6CVHVEHKRY5U5LN2U5CMYK4BJFDTOGJH",
]
```

An agent it lists is checked against that list alone. One it does not list is looked up in
the directory, when ``directory`` is on: the ``signing_keys`` entry of its
`aclbus.AgentDescription` metadata (`with_signing_keys` makes one). Whoever may write the
directory's bucket may publish keys there, so its server permissions matter (``docs/security.md``).
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aclbus_signing.keys import InvalidKey, decode_key_id

if TYPE_CHECKING:
    from aclbus import AgentDescription
    from aclbus.clock import Clock

__all__ = ["METADATA_KEY", "DirectoryReader", "KeyRing", "read_keys_file", "with_signing_keys"]

log = logging.getLogger("aclbus.signing")

METADATA_KEY = "signing_keys"
"""Where an agent's key ids are in its `aclbus.AgentDescription` metadata."""

_REREAD_AFTER = 1.0
"""Seconds before a directory entry is read again for a key id it lacked (a rotation)."""


class DirectoryReader(Protocol):
    """What the key ring needs of the directory: `aclbus.directory.Directory.get`."""

    async def get(self, agent_id: str) -> AgentDescription | None:
        """The agent's description, or None."""
        ...


def with_signing_keys(description: AgentDescription, *key_ids: str) -> AgentDescription:
    """``description`` publishing ``key_ids`` (key ids or ``U…`` NKeys) as its signing keys.

    Raises:
        InvalidKey: One is not a key id.
    """
    kids = [decode_key_id(k, where=f"signing key of {description.agent_id}") for k in key_ids]
    metadata = {**description.metadata, METADATA_KEY: kids}
    return description.model_copy(update={"metadata": metadata})


def _key_list(value: Any, where: str) -> frozenset[str]:
    items: Sequence[Any] = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise InvalidKey(f"{where}: must be a key id or a list of key ids")
    return frozenset(decode_key_id(i, where=where) for i in items)


def read_keys_file(path: Path) -> dict[str, frozenset[str]]:
    """Read a pinned key file: agent id → its key ids.

    Raises:
        InvalidKey: The file cannot be read, is not TOML, or an entry is no list of key ids,
            naming the file and the agent.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidKey(f"pinned key file {path}: cannot read it ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidKey(f"pinned key file {path}: not TOML ({exc})") from None
    return {agent: _key_list(value, f"{path}: {agent}") for agent, value in data.items()}


class KeyRing:
    """The key ids each sender may sign with.

    Args:
        pinned: Agent id → key ids (`read_keys_file`).
        directory: Where to look up agents ``pinned`` does not list; None: nowhere.
        clock: The clock cache ages are measured by.
        ttl: Seconds a directory entry is used before it is read again.
    """

    def __init__(
        self,
        pinned: dict[str, frozenset[str]],
        directory: DirectoryReader | None,
        clock: Clock,
        ttl: float,
    ) -> None:
        self.pinned = pinned
        self.directory = directory
        self.clock = clock
        self.ttl = ttl
        self._read: dict[str, tuple[frozenset[str], float]] = {}

    async def trusts(self, agent_id: str, kid: str) -> bool:
        """Whether ``kid`` is one of ``agent_id``'s keys.

        Raises:
            Exception: Whatever reading the directory raised.
        """
        pinned = self.pinned.get(agent_id)
        if pinned is not None:
            return kid in pinned
        if self.directory is None:
            return False
        now = self.clock.now()
        cached = self._read.get(agent_id)
        if cached is not None:
            keys, read_at = cached
            # A key id it lacks may be a new key (a rotation): read again sooner.
            if now - read_at < (self.ttl if kid in keys else min(self.ttl, _REREAD_AFTER)):
                return kid in keys
        keys = await self._lookup(agent_id)
        self._read[agent_id] = (keys, now)
        return kid in keys

    async def _lookup(self, agent_id: str) -> frozenset[str]:
        assert self.directory is not None
        description = await self.directory.get(agent_id)
        if description is None:
            return frozenset()
        value = description.metadata.get(METADATA_KEY)
        if value is None:
            return frozenset()
        try:
            return _key_list(value, f"directory entry of {agent_id}: {METADATA_KEY}")
        except InvalidKey as exc:
            log.warning("%s", exc)  # a bad entry makes no key trusted, and says why
            return frozenset()

    def known(self) -> Iterable[str]:
        """The agents whose keys are pinned."""
        return self.pinned.keys()
