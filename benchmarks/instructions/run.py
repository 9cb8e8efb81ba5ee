"""Instructions per message on the memory backend, counted by valgrind's callgrind.

``make bench-instructions`` runs this with the project's Python. Each mode of
``workload.py`` (core, durable, request) runs once under callgrind; the instructions of its
measured phases, divided by the number of messages, are the figures: unlike wall-clock
time they do not move with the machine's load, so a change of a few per cent shows.

    python benchmarks/instructions/run.py                   # the table
    python benchmarks/instructions/run.py --json now.json   # and the figures as JSON
    python benchmarks/instructions/run.py --against old.json
    python benchmarks/instructions/run.py --base main       # that revision, then this tree

Exit status: 0, 1 when a workload failed (its stderr is shown), 2 when valgrind is missing
or an option is wrong.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import callgrind
import workload

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = Path(workload.__file__).resolve()
DEFAULT_PLUGINS = "json,memory"


@dataclass(frozen=True)
class Figure:
    """One figure of the table.

    Attributes:
        key: Its name, in the table and the JSON.
        mode: The workload mode that measures it.
        phases: The phases of that mode whose instructions it sums.
        counts: What those instructions are spent on, for the table.
    """

    key: str
    mode: str
    phases: tuple[str, ...]
    counts: str


FIGURES = (
    Figure(
        "publish",
        "core",
        ("publish",),
        "the sender: Agent.message + bus.broadcast (at_most_once) until the backend's publish "
        "returns",
    ),
    Figure(
        "consume",
        "core",
        ("consume",),
        "the receiver: from the backend's queue through decode, routing and the handler",
    ),
    Figure(
        "request-reply",
        "request",
        ("round-trip",),
        "one sequential bus.request: request out, handled, reply back and decoded",
    ),
    Figure("core", "core", ("publish", "consume"), "core end to end: publish + consume"),
    Figure(
        "durable",
        "durable",
        ("publish", "consume"),
        "bus.send (at_least_once) end to end, acked by the receiver",
    ),
    Figure("durable-publish", "durable", ("publish",), "bus.send until the message is stored"),
    Figure("durable-consume", "durable", ("consume",), "stored message to handler and ack"),
)


class WorkloadFailed(Exception):
    """A workload ran but its result is not usable (a message missing, an unknown source)."""


def measure(
    modes: Sequence[str],
    *,
    messages: int,
    warmup: int,
    plugins: str,
    tree: Path,
) -> dict[str, Any]:
    """Run each mode under callgrind; the figures, the raw phase totals, where aclbus was.

    Args:
        modes: The workload's modes to run.
        messages: Measured messages per mode.
        warmup: Messages before measuring.
        plugins: ``ACLBUS_PLUGINS`` for the workload.
        tree: The code to measure (`stage`): its source folders go first on the workload's
            ``sys.path``, so aclbus comes from there.

    Raises:
        callgrind.ValgrindMissing: valgrind is not on PATH.
        callgrind.CallgrindError: A workload exited non-zero under callgrind.
        WorkloadFailed: Its report is not what it should be.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    env["ACLBUS_PLUGINS"] = plugins
    env["PYTHONHASHSEED"] = "0"  # the same string hashes, so the same dict and set work
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in source_folders(tree))
    phases: dict[str, dict[str, int]] = {}
    interleaved: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="aclbus-instr-") as cwd:  # no aclbus.toml, no .env
        for mode in modes:
            started = time.monotonic()
            argv = [sys.executable, str(WORKLOAD), mode]
            argv += ["--messages", str(messages), "--warmup", str(warmup)]
            names = ("round-trip",) if mode == "request" else ("publish", "consume")
            done = callgrind.run(
                argv, marker=workload.MARKER, marks=len(names) + 1, env=env, cwd=Path(cwd)
            )
            report = json.loads(done.stdout.strip().splitlines()[-1])
            if list(report["phases"]) != list(names):
                raise WorkloadFailed(f"{mode}: phases {report['phases']}, expected {names}")
            if not Path(report["source"]).is_relative_to(tree):
                raise WorkloadFailed(f"{mode}: aclbus came from {report['source']}, not {tree}")
            # parts: start-up and warm-up, one per phase, teardown
            phases[mode] = dict(zip(names, done.parts[1:-1], strict=True))
            if report["interleaved"]:
                interleaved[mode] = report["interleaved"]
            print(f"  {mode}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    figures: dict[str, int | None] = {}
    for figure in FIGURES:
        if figure.mode not in phases:
            continue
        if figure.mode in interleaved and len(figure.phases) < len(phases[figure.mode]):
            figures[figure.key] = None  # publish and consume overlapped: only their sum holds
        else:
            figures[figure.key] = round(
                sum(phases[figure.mode][p] for p in figure.phases) / messages
            )
    return {
        "unit": "instructions/message",
        "figures": figures,
        "phases": phases,
        "notes": [
            f"{mode}: {count} deliveries ran while it published, so its publish and consume "
            "figures cannot be told apart (their sum, end to end, holds)"
            for mode, count in interleaved.items()
        ],
        "messages": messages,
        "warmup": warmup,
        "plugins": plugins,
    }


def measure_revision(rev: str | None, modes: Sequence[str], **options: Any) -> dict[str, Any]:
    """`measure` the code of ``rev`` (None: this working tree), staged by `stage`."""
    print(f"{rev or 'this tree'}:", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="aclbus-code-") as tmp:
        stage(rev, Path(tmp))
        result = measure(modes, tree=Path(tmp), **options)
    result["revision"] = revision(rev or "HEAD")
    result["source"] = f"{rev} (git archive)" if rev else f"this tree ({ROOT.name}, copied)"
    return result


def revision(rev: str = "HEAD") -> str | None:
    """``rev``'s short commit id; ``+changes`` when the working tree's sources differ (HEAD)."""
    try:
        commit = _git("rev-parse", "--short", f"{rev}^{{commit}}").decode().strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    if rev == "HEAD" and _git("status", "--porcelain", "--", "core", "adapters", "plugins"):
        commit += "+changes"
    return commit


def _git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=True).stdout


def stage(rev: str | None, into: Path) -> None:
    """Put the packages' sources (core, adapters, plugins) of ``rev`` into ``into``.

    ``rev`` None: this working tree's, copied, uncommitted changes included. A revision: by
    ``git archive``; nothing is checked out and no worktree is registered.

    Both are measured from such a copy, in a folder whose name has the same length, so that
    the only difference between a revision and this tree is the code: the same code run from
    two places of different ``sys.path`` differs by up to 0.7 % here (the C allocator's work
    depends on the layout of everything allocated before).
    """
    if rev is None:
        for folder in source_folders(ROOT):
            shutil.copytree(
                folder,
                into / folder.relative_to(ROOT),
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        return
    data = _git("archive", "--format=tar", rev, "--", "core", "adapters", "plugins")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")


def source_folders(tree: Path) -> list[Path]:
    """The ``src`` folders of the packages in ``tree``, core first."""
    return [
        tree / "core" / "src",
        *sorted(tree.glob("adapters/*/src")),
        *sorted(tree.glob("plugins/*/src")),
    ]


def table(result: Mapping[str, Any]) -> str:
    """The figures as a Markdown table: path, instructions per message, what it counts."""
    rows = ["| path | instructions/message | what it counts |", "| --- | ---: | --- |"]
    for figure in FIGURES:
        if figure.key in result["figures"]:
            rows.append(
                f"| {figure.key} | {_number(result['figures'][figure.key])} | {figure.counts} |"
            )
    return "\n".join(rows)


def comparison(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """Before and after as a Markdown table, with after / before and the change per path."""
    rows = [
        "| path | before | after | after/before | change |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for figure in FIGURES:
        old, new = before["figures"].get(figure.key), after["figures"].get(figure.key)
        if old is None and new is None:
            continue
        ratio, change = (
            (f"{new / old:.3f}", f"{(new / old - 1) * 100:+.2f} %")
            if old and new is not None
            else ("-", "-")
        )
        rows.append(f"| {figure.key} | {_number(old)} | {_number(new)} | {ratio} | {change} |")
    return "\n".join(rows)


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _heading(result: Mapping[str, Any], label: str) -> str:
    # --against may read a file of an earlier version: every field but the figures is optional
    def field(name: str) -> str:
        value = result.get(name)
        return "?" if value is None else f"{value:,}" if isinstance(value, int) else str(value)

    return (
        f"{label}: aclbus from {field('source')} (revision {field('revision')}), "
        f"{field('messages')} messages after {field('warmup')} of warm-up, "
        f"ACLBUS_PLUGINS={field('plugins')}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(
        prog="bench-instructions",
        description="Instructions per message on the memory backend (valgrind's callgrind).",
    )
    parser.add_argument("--messages", type=int, default=2000, help="measured per mode (2000)")
    parser.add_argument("--warmup", type=int, default=200, help="sent before measuring (200)")
    parser.add_argument(
        "--modes",
        default=",".join(workload.MODES),
        help="comma-separated workloads to run: core, durable, request (all)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the figures here")
    parser.add_argument(
        "--against", type=Path, metavar="OLD.json", help="compare with an earlier --json"
    )
    parser.add_argument(
        "--base", metavar="REV", help="measure git revision REV first, then compare with it"
    )
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(workload.MODES))
    if unknown or not modes:
        parser.error(f"--modes: unknown {', '.join(unknown) or 'none given'}")
    if args.messages < 1 or args.warmup < 0:
        parser.error("--messages must be at least 1 and --warmup at least 0")
    before: dict[str, Any] | None = None
    if args.against is not None:
        try:
            before = json.loads(args.against.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"--against {args.against}: {exc}")
        if not isinstance(before, dict) or not isinstance(before.get("figures"), dict):
            parser.error(f"--against {args.against}: no 'figures' object (write one with --json)")
    if args.base is not None and revision(args.base) is None:
        parser.error(f"--base {args.base}: not a revision of {ROOT}")
    plugins = os.environ.get("ACLBUS_PLUGINS", DEFAULT_PLUGINS)
    options = {"messages": args.messages, "warmup": args.warmup, "plugins": plugins}
    started = time.monotonic()
    try:
        valgrind = callgrind.valgrind_version()
        if args.base is not None:
            before = measure_revision(args.base, modes, **options)
        result = measure_revision(None, modes, **options)
    except callgrind.ValgrindMissing as exc:
        print(f"bench-instructions: {exc}", file=sys.stderr)
        return 2
    except (callgrind.CallgrindError, WorkloadFailed) as exc:
        print(f"bench-instructions: a workload failed: {exc}", file=sys.stderr)
        return 1
    result["valgrind"] = valgrind
    result["python"] = platform.python_version()
    if before is not None:
        print(_heading(before, f"before ({args.against or args.base})"))
        print(_heading(result, "after"))
        print()
        print(comparison(before, result))
    else:
        print(_heading(result, "instructions per message"))
        print()
        print(table(result))
    for note in [*(before or {}).get("notes", []), *result["notes"]]:
        print(f"note: {note}")
    print(f"({time.monotonic() - started:.0f} s under callgrind)", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
