"""The Dockerfile, checked statically (there is no Docker engine here to build it).

Multi-stage, the final stage python:3.11-slim with only the builder's venv, a user that is not
root before the command, ``aclbus serve --host 0.0.0.0`` by default, no secret in it, every
file it copies present, and a .dockerignore that keeps environments and secrets out.
"""

from __future__ import annotations

import json
import re

from .manifests import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            result.append((instruction.upper(), arguments.strip()))
    return result


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def test_it_has_a_builder_and_a_slim_final_stage() -> None:
    stages = _stages()
    assert len(stages) >= 2
    assert stages[0][0] == ("FROM", "python:3.11-slim AS builder")
    final = stages[-1]
    assert final[0] == ("FROM", "python:3.11-slim")
    copies = [args for name, args in final if name == "COPY"]
    # Only the venv comes over: no sources, no uv.
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_it_runs_as_a_user_that_is_not_root() -> None:
    final = _stages()[-1]
    names = [name for name, _ in final]
    users = [args for name, args in final if name == "USER"]
    assert users, "no USER in the final stage"
    assert names.index("USER") < names.index("CMD")
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_the_default_command_is_the_gateway_on_all_interfaces() -> None:
    (command,) = [args for name, args in _instructions() if name == "CMD"]
    assert json.loads(command) == ["aclbus", "serve", "--host", "0.0.0.0"]
    assert not [name for name, _ in _instructions() if name == "ENTRYPOINT"]


def test_every_file_it_copies_exists() -> None:
    copies = [args.split() for name, args in _instructions() if name == "COPY"]
    sources = [parts[:-1] for parts in copies if not parts[0].startswith("--from")]
    assert sources
    for paths in sources:
        for path in paths:
            assert (ROOT / path).exists(), f"the Dockerfile copies {path}: not in the repo"


def test_it_holds_no_secret() -> None:
    secretish = re.compile(r"TOKEN|PASSWORD|SECRET|PRIVATE|_KEY\b|CREDS", re.IGNORECASE)
    for name, args in _instructions():
        if name in ("ENV", "ARG", "LABEL"):
            assert not secretish.search(args), f"{name} {args}"
        if name == "COPY":
            assert not re.search(r"\.(pem|key|creds)\b|secrets", args), f"COPY {args}"


def test_dockerignore_keeps_environments_and_secrets_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".git", ".venv", ".tools", ".env", "**/tests", "deploy/compose/secrets"} <= ignored
