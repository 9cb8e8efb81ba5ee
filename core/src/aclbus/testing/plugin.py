"""The pytest plugin of the conformance kit (entry point ``pytest11: aclbus``).

It registers the kit's markers and skips a conformance test whose testcase (its ``requires``
class attribute) or its own ``aclbus_requires`` marker asks for a capability that the
backend config lacks. The skip is a declared absence — the reason names the backend and the
capability, ``backend 'kafka' lacks capability: nack_delay`` — never a way to hide a failure:
a backend that declares a capability must pass every test that needs it.
"""

from __future__ import annotations

import os
from dataclasses import fields

import pytest

from aclbus.backend import Capabilities

__all__ = [
    "capability_names",
    "lacking",
    "required_capabilities",
    "selected_backends",
    "skip_reason",
]

CONFORMANCE_MARKER = "aclbus_conformance"
REQUIRES_MARKER = "aclbus_requires"


def capability_names() -> list[str]:
    """The names of every capability flag a backend can declare."""
    return [f.name for f in fields(Capabilities)]


def pytest_configure(config: pytest.Config) -> None:
    """Register the kit's markers (the workspace runs pytest with ``--strict-markers``)."""
    config.addinivalue_line(
        "markers",
        f"{CONFORMANCE_MARKER}: a test of the aclbus conformance kit (added to every test of "
        "a *Testcase class mixed with a backend config)",
    )
    config.addinivalue_line(
        "markers",
        f"{REQUIRES_MARKER}(*capabilities): skip the test on a backend config lacking any of "
        f"these capabilities ({', '.join(capability_names())})",
    )


def required_capabilities(item: pytest.Item) -> set[str]:
    """The capabilities a test needs: its class's ``requires`` plus its markers' names.

    Raises:
        pytest.UsageError: A marker names a capability that does not exist.
    """
    cls = getattr(item, "cls", None)
    needed: set[str] = set()
    requires = getattr(cls, "requires", None)
    if isinstance(requires, Capabilities):
        needed.update(requires.names())
    known = set(capability_names())
    for marker in item.iter_markers(REQUIRES_MARKER):
        for name in marker.args:
            if name not in known:
                raise pytest.UsageError(
                    f"{item.nodeid}: @pytest.mark.{REQUIRES_MARKER}({name!r}) names no "
                    f"capability; known: {', '.join(sorted(known))}"
                )
            needed.add(name)
    return needed


def lacking(capabilities: Capabilities, needed: set[str]) -> list[str]:
    """The capabilities in ``needed`` that ``capabilities`` does not have, in flag order."""
    present = set(capabilities.names())
    return [name for name in capability_names() if name in needed and name not in present]


def skip_reason(backend: str, missing: list[str]) -> str:
    """The reason a test is skipped: ``backend 'x' lacks capability: y, z``."""
    return f"backend {backend!r} lacks capability: {', '.join(missing)}"


def selected_backends() -> set[str] | None:
    """The backends named by ``ACLBUS_TEST_BACKENDS`` (comma-separated), or None for all.

    The tox matrix sets it per factor (``py312-nats`` runs the conformance kit on nats only).
    """
    raw = os.environ.get("ACLBUS_TEST_BACKENDS", "").strip()
    return {name.strip() for name in raw.split(",") if name.strip()} or None


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selection, which reads the markers added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark conformance tests and skip those needing a capability their backend lacks.

    With ``ACLBUS_TEST_BACKENDS`` set, conformance tests of other backends are deselected.
    """
    wanted = selected_backends()
    deselected: list[pytest.Item] = []
    kept: list[pytest.Item] = []
    for item in items:
        cls = getattr(item, "cls", None)
        name = getattr(cls, "name", None)
        if (
            wanted is not None
            and isinstance(getattr(cls, "capabilities", None), Capabilities)
            and name not in wanted
        ):
            deselected.append(item)
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
    for item in items:
        cls = getattr(item, "cls", None)
        if cls is None or not isinstance(getattr(cls, "requires", None), Capabilities):
            continue
        capabilities = getattr(cls, "capabilities", None)
        if not isinstance(capabilities, Capabilities):
            continue  # a testcase without a backend config: make_backend() will say so
        item.add_marker(CONFORMANCE_MARKER)
        missing = lacking(capabilities, required_capabilities(item))
        if missing:
            name = getattr(cls, "name", cls.__name__)
            item.add_marker(pytest.mark.skip(reason=skip_reason(str(name), missing)))
