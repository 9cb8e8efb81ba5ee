"""``python -m aclbus_signing``: make a signing key, print a key file's key id.

    python -m aclbus_signing new-key alice.seed   # writes a new seed (mode 600), prints its key id
    python -m aclbus_signing key-id alice.seed    # the key id of an existing key file

The key id is what goes in the pinned key file (``alice = ["<key id>"]``) or the directory.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aclbus_signing.keys import InvalidKey, PrivateKey, read_private_key

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m aclbus_signing", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new-key", help="write a new Ed25519 seed file, print its key id")
    new.add_argument("path", type=Path)
    show = commands.add_parser("key-id", help="print the key id of a key file")
    show.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    if args.command == "new-key":
        key = PrivateKey.generate()
        try:
            # created 600 from the start: the seed is never readable by others, not even briefly
            fd = os.open(args.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            print(f"{args.path} exists: not overwritten", file=sys.stderr)
            return 1
        with os.fdopen(fd, "w") as file:
            file.write(key.seed_text() + "\n")
        print(key.key_id)
        return 0
    try:
        print(read_private_key(args.path).key_id)
    except InvalidKey as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
