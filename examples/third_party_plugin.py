"""A third-party plugin with settings of its own: the audit log of examples/plugin/.

    pip install ./examples/plugin && python examples/third_party_plugin.py

Installed, the plugin loads through its ``aclbus`` entry point like any other. This example
also runs from a checkout without installing it: it then passes the module to `Bus` itself.
Its settings come from the ``[audit]`` table of an aclbus.toml, written here into a temporary
working directory, and the environment (``ACLBUS_AUDIT__LEVEL``) overrides the file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from aclbus import ACLMessage, Bus, ConfigurationError, Performative

installed = any(ep.name == "audit" for ep in metadata.entry_points(group="aclbus"))
if not installed:
    sys.path.insert(0, str(Path(__file__).resolve().parent / "plugin" / "src"))
import aclbus_audit  # noqa: E402


def plugins() -> list[object]:
    """The plugin objects to pass to `Bus`: none when the entry point is installed."""
    return [] if installed else [aclbus_audit]


async def serve() -> None:
    """Serve a worker that the audit log watches, and ask it once."""
    async with Bus(plugins=plugins()) as bus:
        worker = bus.agent("worker")

        @worker.on(Performative.REQUEST)
        async def double(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload=msg.payload * 2)

        await worker.start()
        request = ACLMessage(
            performative=Performative.REQUEST, sender_id="cli", receiver_id="worker", payload=21
        )
        reply = await bus.request(request, timeout=5)
        print(f"worker answered {reply.payload}; the audit line is logged at WARNING level")
        assert reply.payload == 42


def main() -> None:
    """Run with the plugin's table in aclbus.toml, then show what a typo in it does."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    os.chdir(tempfile.mkdtemp(prefix="aclbus-example-"))
    Path("aclbus.toml").write_text('[audit]\nperformatives = ["request"]\nlevel = "info"\n')
    os.environ["ACLBUS_AUDIT__LEVEL"] = "warning"  # the environment beats the file
    asyncio.run(serve())

    Path("aclbus.toml").write_text("[audit]\nlevle = 'info'\n")
    try:
        Bus(plugins=plugins())
    except ConfigurationError as exc:
        print(f"a typo in the plugin's table is refused: {exc}")
    else:
        raise SystemExit("the typo was not noticed")


if __name__ == "__main__":
    main()
