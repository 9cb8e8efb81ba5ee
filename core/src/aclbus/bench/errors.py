"""The errors of ``aclbus bench``: bad arguments, and a column that could not finish a step."""

from __future__ import annotations

from collections.abc import Iterable

from aclbus.errors import ACLBusError, ConfigurationError

__all__ = ["BenchError", "BenchTimeout", "UnknownScenario"]


class BenchError(ACLBusError):
    """A benchmark could not run or finish."""


class UnknownScenario(BenchError, ConfigurationError):
    """A scenario name that the harness does not know.

    Args:
        name: The name asked for.
        known: The scenarios there are.
    """

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(known)
        super().__init__(f"Unknown scenario {name!r}. Known scenarios: {', '.join(self.known)}")


class BenchTimeout(BenchError):
    """A column did not finish a step within its time bound.

    Args:
        column: The column (``raw``, ``faststream``, ``aclbus``, ``memory``).
        step: The step it was running.
        timeout: The bound, in seconds.
        detail: What was missing when time ran out.
    """

    def __init__(self, column: str, step: str, timeout: float, detail: str = "") -> None:
        self.column = column
        self.step = step
        self.timeout = timeout
        more = f": {detail}" if detail else ""
        super().__init__(
            f"column {column!r} did not finish step {step!r} within {timeout:g} s{more}; "
            "use fewer --messages or a longer --timeout"
        )
