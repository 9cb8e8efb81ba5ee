"""The latency plot: one CDF per latency figure, one line per column (needs matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aclbus.bench.errors import BenchError
from aclbus.bench.figures import COLUMNS, Figure

__all__ = ["check_plotting", "write_plot"]

_INSTALL = 'pip install "aclbus[bench]"'


def check_plotting() -> None:
    """Fail early, before a long run, if the plot cannot be drawn.

    Raises:
        BenchError: matplotlib is not installed; says how to install it.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise BenchError(f"--plot needs matplotlib, which is not installed: {_INSTALL}") from None


def write_plot(figures: Sequence[Figure], path: Path) -> int:
    """Draw the latency CDFs of ``figures`` to a PNG at ``path``.

    Returns:
        How many panels were drawn (latency figures with samples).

    Raises:
        BenchError: matplotlib is missing, or no figure has latencies to plot.
    """
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    panels = [f for f in figures if f.is_latency and any(f.samples.values())]
    if not panels:
        raise BenchError(
            "--plot draws latencies: run request-reply or latency-at-rate to have some"
        )
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False, dpi=90
    )
    for ax, figure in zip(axes[0], panels, strict=True):
        for column in COLUMNS:
            samples = sorted(figure.samples.get(column, ()))
            if not samples:
                continue
            ms = [s * 1000 for s in samples]
            share = [(i + 1) / len(ms) for i in range(len(ms))]
            ax.plot(ms, share, label=column, linewidth=1.4)
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log)")
        ax.set_ylabel("share of messages")
        ax.set_title(f"{figure.scenario}\n{figure.metric}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return len(panels)
