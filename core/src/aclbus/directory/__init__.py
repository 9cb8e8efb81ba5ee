"""The agent directory and presence: who is on the broker, what they can do, who is alive.

Agents register an `AgentDescription` (skills, protocols, ontologies, version, metadata) with
`Directory.register`, which also keeps them available by heartbeats; others `search` by skill,
protocol or ontology, and `watch` the changes. An agent whose heartbeats stop is unavailable
once its last beat is 3 intervals old; `Bus.stop` deregisters its agents at once.

    await bus.directory.register(AgentDescription(agent_id="translator", skills=("translate",)))
    found = await bus.directory.search(skill="translate")
"""

from __future__ import annotations

from aclbus.directory.description import AgentDescription, InvalidDescription
from aclbus.directory.directory import ChangeKind, Directory, DirectoryChange, DirectoryWatch
from aclbus.directory.presence import MISSED_BEATS, Presence

__all__ = [
    "MISSED_BEATS",
    "AgentDescription",
    "ChangeKind",
    "Directory",
    "DirectoryChange",
    "DirectoryWatch",
    "InvalidDescription",
    "Presence",
]
