from __future__ import annotations

import inspect
import re
from pathlib import Path

from aclbus.plugin import spec

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _signature(func: object) -> str:
    sig = inspect.signature(func)  # type: ignore[arg-type]
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{func.__name__}({params}) -> {sig.return_annotation}"  # type: ignore[attr-defined]


def test_every_hook_is_documented_under_its_exact_signature() -> None:
    page = (DOCS / "plugins.md").read_text()
    headings = set(re.findall(r"^### `(.+)`$", page, flags=re.MULTILINE))
    hooks = [getattr(spec, n) for n in dir(spec) if n.startswith("aclbus_")]
    assert hooks, "no hookspecs found"
    missing = [_signature(h) for h in hooks if _signature(h) not in headings]
    assert not missing, f"docs/plugins.md lacks a heading for: {missing}"
    stale = {h.split("(")[0] for h in headings} - {h.__name__ for h in hooks}
    assert not stale, f"docs/plugins.md documents hooks that do not exist: {stale}"


def test_every_hook_has_a_docstring_with_versionadded() -> None:
    for name in dir(spec):
        if name.startswith("aclbus_"):
            doc = getattr(spec, name).__doc__ or ""
            assert ".. versionadded::" in doc, name
