"""A program run under valgrind's callgrind, and the instructions of each of its phases.

The program marks its phase boundaries by entering one C function (``workload.MARKER``);
``--dump-before`` makes callgrind write its counters at each entry and start again from zero,
so dump *k* holds the instructions executed between boundary *k-1* and *k*: start-up (the
imports, the buses) is the first dump, teardown the last, and neither counts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CallgrindError", "Run", "ValgrindMissing", "run", "valgrind_version"]

_PART = re.compile(rb"^part: (\d+)$", re.MULTILINE)
_TOTALS = re.compile(rb"^totals: (\d+)$", re.MULTILINE)


class ValgrindMissing(Exception):
    """valgrind is not on PATH."""

    def __str__(self) -> str:
        return (
            "valgrind is not installed: the instruction counts come from valgrind's callgrind. "
            "Install it with: apt-get install valgrind"
        )


class CallgrindError(Exception):
    """The program failed under callgrind, or its dumps are not the ones its marks make."""


@dataclass(frozen=True)
class Run:
    """What one run under callgrind gave.

    Attributes:
        stdout: The program's standard output.
        parts: Instructions per dump, in order: before the first mark, between each two
            marks, after the last.
    """

    stdout: str
    parts: tuple[int, ...]


def valgrind_version() -> str:
    """``valgrind --version``, e.g. ``valgrind-3.19.0``.

    Raises:
        ValgrindMissing: valgrind is not on PATH.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise ValgrindMissing
    return subprocess.run(
        [valgrind, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def run(argv: Sequence[str], *, marker: str, marks: int, env: Mapping[str, str], cwd: Path) -> Run:
    """Run ``argv`` under callgrind, a dump at each entry into ``marker``.

    Args:
        argv: The program and its arguments.
        marker: The C function whose entries are the phase boundaries.
        marks: How many boundaries the program marks (a run with more or fewer dumps, for
            example because something else entered ``marker``, is an error).
        env: The program's environment.
        cwd: Its working directory.

    Raises:
        ValgrindMissing: valgrind is not on PATH.
        CallgrindError: The program exited non-zero (its stderr is in the message), or the
            dumps do not match ``marks``.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise ValgrindMissing
    with tempfile.TemporaryDirectory(prefix="aclbus-callgrind-") as tmp:
        out = Path(tmp, "callgrind.out")
        command = [
            valgrind,
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            f"--log-file={Path(tmp, 'valgrind.log')}",  # the program's stderr stays its own
            f"--dump-before={marker}",
            *argv,
        ]
        done = subprocess.run(command, capture_output=True, text=True, env=dict(env), cwd=cwd)
        if done.returncode != 0:
            log = Path(tmp, "valgrind.log")
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise CallgrindError(
                f"{' '.join(argv)} exited with {done.returncode}:\n{done.stderr.strip()}"
                + (f"\nvalgrind's log ends:\n{tail}" if not done.stderr.strip() else "")
            )
        parts = sorted(_read_part(path) for path in Path(tmp).glob("callgrind.out*"))
    if len(parts) != marks + 1:
        raise CallgrindError(
            f"callgrind wrote {len(parts)} dumps, {marks + 1} expected ({marks} marks): "
            f"something else enters {marker}, or this Python's libpython has no symbol for it"
        )
    return Run(done.stdout, tuple(total for _, total in parts))


def _read_part(path: Path) -> tuple[int, int]:
    text = path.read_bytes()
    part, totals = _PART.search(text), _TOTALS.search(text)
    if part is None or totals is None:
        raise CallgrindError(f"{path.name}: no 'part:' or 'totals:' line in callgrind's output")
    return int(part.group(1)), int(totals.group(1))
