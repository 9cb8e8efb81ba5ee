"""The documentation site's API reference covers every adapter and plugin package.

`make docs` (mkdocs build --strict) fails on a page missing from the nav or an object that does
not resolve; this checks the other direction: a package added under adapters/ or plugins/ gets
a page in docs/reference/.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _documented() -> set[str]:
    pages = (ROOT / "docs" / "reference").glob("*.md")
    return {m for p in pages for m in re.findall(r"^::: (\S+)$", p.read_text(), flags=re.M)}


def test_every_adapter_and_plugin_package_has_a_reference_page() -> None:
    packages = {
        p.name
        for p in [*ROOT.glob("adapters/*/src/*"), *ROOT.glob("plugins/*/src/*")]
        if (p / "__init__.py").is_file()
    }
    assert packages, "no packages found under adapters/ and plugins/"
    missing = sorted(packages - _documented())
    assert not missing, f"docs/reference/ has no `::: package` page for: {missing}"
