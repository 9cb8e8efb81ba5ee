"""docs/architecture.md's diagram of the layers is the import-linter contract, drawn.

The diagram between the ``layers-diagram`` markers is made from the ``core-layers`` contract
in pyproject.toml; when the contract changes, this test fails and prints the new diagram.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "architecture.md"
BEGIN = "<!-- layers-diagram: made from pyproject.toml by tests/test_architecture_doc.py -->"
END = "<!-- /layers-diagram -->"


def _groups(pyproject: str) -> list[tuple[str, list[str]]]:
    """The layers of the ``core-layers`` contract, top first, under their ``#`` headings."""
    contracts = tomllib.loads(pyproject)["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["id"] == "core-layers")["layers"]
    block = pyproject[pyproject.index('id = "core-layers"') :]
    block = block[block.index("layers = [") : block.index("\n]")]
    groups: list[tuple[str, list[str]]] = []
    for line in block.splitlines()[1:]:
        line = line.strip()
        if line.startswith("#"):
            groups.append((line.lstrip("# ").split(":")[0], []))
        elif line.startswith('"'):
            groups[-1][1].append(line.strip('",'))
    assert [layer for _, group in groups for layer in group] == layers
    return groups


def diagram(pyproject: str) -> str:
    """The mermaid flowchart of the layers: each imports only from those below it."""
    out = ["```mermaid", "flowchart TB"]
    n = 0
    for name, layers in _groups(pyproject):
        out.append(f'    subgraph {name.replace(" ", "_")}["{name}"]')
        for layer in layers:
            out.append(f'        L{n}["{layer}"]')
            n += 1
        out.append("    end")
    out.append("    " + " --> ".join(f"L{i}" for i in range(n)))
    out.append("```")
    return "\n".join(out)


def test_the_layers_diagram_is_the_contract() -> None:
    expected = diagram((ROOT / "pyproject.toml").read_text())
    page = PAGE.read_text()
    found = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), page, flags=re.S)
    assert found, f"docs/architecture.md lacks the markers {BEGIN!r} … {END!r}"
    assert found.group(1) == expected, "the diagram is stale; put this between the markers:\n" + (
        expected
    )


def test_the_diagram_follows_a_changed_contract() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    changed = pyproject.replace('    "cli",\n', '    "cli",\n    "gateway",\n', 1)
    assert 'L1["gateway"]' in diagram(changed)
    assert 'L1["gateway"]' not in diagram(pyproject)
