"""Build a mypyc-compiled copy of aclbus' envelope path, for measuring it (an experiment).

The package is copied to OUT and the wire modules and ``subjects`` are compiled there in
place; putting OUT first on ``PYTHONPATH`` runs aclbus with them::

    uv pip install --python .venv/bin/python setuptools   # mypyc's build needs it
    .venv/bin/python benchmarks/mypyc_build.py /tmp/aclbus-mypyc
    PYTHONPATH=/tmp/aclbus-mypyc .venv/bin/pytest core/tests/test_wire.py -q

``acl.py`` is left out: mypyc's C for the module holding the pydantic model does not compile
(mypy 2.4), and ``wire/parsed_headers.py`` stays Python (see its docstring). The figures are
in ``docs/performance.md`` ("A compiled envelope path").
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["COMPILED", "main"]

CORE_SRC = Path(__file__).resolve().parent.parent / "core" / "src"
COMPILED = (
    "aclbus/subjects.py",
    "aclbus/wire/cloudevents.py",
    "aclbus/wire/decoding.py",
    "aclbus/wire/encoding.py",
    "aclbus/wire/fields.py",
    "aclbus/wire/header_block.py",
    "aclbus/wire/size.py",
    "aclbus/wire/timestamps.py",
)
"""The modules compiled, relative to ``core/src``."""

_SETUP = """\
from setuptools import setup
from mypyc.build import mypycify

setup(name="aclbus-mypyc", ext_modules=mypycify({modules!r}, opt_level="3"))
"""


def main(out: Path) -> None:
    """Copy ``core/src/aclbus`` to ``out`` and compile `COMPILED` there, in place."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(
        CORE_SRC / "aclbus", out / "aclbus", ignore=shutil.ignore_patterns("__pycache__")
    )
    (out / "setup.py").write_text(_SETUP.format(modules=list(COMPILED)))
    subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=out,
        check=True,
        stdout=subprocess.DEVNULL,
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: mypyc_build.py OUT")
    main(Path(sys.argv[1]))
