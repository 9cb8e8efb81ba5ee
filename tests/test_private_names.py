"""No module takes another module's private name: what two modules share has a public name.

import-linter (``lint-imports``, in ``make lint``) keeps the layers and forbids cycles and
imports of private modules; ruff's SLF001 forbids ``obj._attr`` on another object. What
neither sees is ``from module import _name``: this test does.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    path
    for pattern in ("core/src/**/*.py", "adapters/*/src/**/*.py", "plugins/*/src/**/*.py")
    for path in ROOT.glob(pattern)
)


def _private_imports(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                name = alias.name
                if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                    where = f"{path.relative_to(root)}:{node.lineno}"
                    found.append(
                        f"{where}: from {'.' * node.level}{node.module or ''} import {name}"
                    )
    return found


def test_the_sources_are_found() -> None:
    assert len(SOURCES) > 100
    assert ROOT / "core/src/aclbus/bus.py" in SOURCES


def test_no_module_imports_a_private_name_of_another() -> None:
    offenders = [line for path in SOURCES for line in _private_imports(path)]
    assert not offenders, "private names imported across modules:\n" + "\n".join(offenders)


def test_the_check_sees_a_private_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from aclbus.acl import _hidden, ACLMessage\n"
        "from x import __version__\n"
        "from . import _sibling\n"
    )
    assert _private_imports(sample, tmp_path) == [
        "sample.py:1: from aclbus.acl import _hidden",
        "sample.py:3: from . import _sibling",
    ]
