"""The demo's fault seam (`run_demo(fault=...)`) and its accounting, on the memory backend."""

from __future__ import annotations

import io

from rich.console import Console

from aclbus.demo import DemoResult, FaultReport, PatternStats, run_demo
from aclbus.settings import Settings


async def test_a_fault_is_called_once_halfway_and_reported_with_the_accounting() -> None:
    calls: list[str] = []
    out = io.StringIO()

    class Nothing:
        async def inject(self) -> str:
            calls.append("inject")
            return "node killed: nothing really"

        async def recover(self) -> str:
            calls.append("recover")
            return "node restarted: nothing really"

    fault = Nothing()

    result = await run_demo(
        Settings(backend="memory"),
        agents=2,
        messages=4,
        duration=20,
        console=Console(file=out, width=200),
        fault=fault,
    )
    assert calls == ["inject", "recover"]
    assert result.ok, out.getvalue()
    assert result.fault is not None
    assert result.fault.what == "node killed: nothing really"
    assert 0 < result.fault.at < result.seconds
    assert result.fault.resumed_after is not None
    assert result.fault.recovered == "node restarted: nothing really"
    assert (result.acked, result.lost, result.duplicates) == (8, 0, 0)
    text = out.getvalue()
    assert "node killed: nothing really at t=" in text
    assert "s; node restarted: nothing really" in text
    assert "work items acknowledged: 8, handled: 8, lost: 0, delivered again: 0" in text


async def test_without_a_fault_the_demo_says_nothing_of_one() -> None:
    out = io.StringIO()
    result = await run_demo(
        Settings(backend="memory"), agents=1, messages=2, console=Console(file=out, width=200)
    )
    assert result.ok
    assert result.fault is None
    assert "resumed after" not in out.getvalue()
    assert "work items acknowledged: 2, handled: 2, lost: 0" in out.getvalue()


def test_a_lost_acknowledged_item_fails_the_run() -> None:
    every = {"p2p work (pool)": PatternStats(sent=2, delivered=2)}
    assert DemoResult(every, "memory", 1.0, {}, acked=2).ok
    assert not DemoResult(every, "memory", 1.0, {}, acked=2, lost=1).ok
    assert str(FaultReport("node killed: n", 1.5)) == (
        "node killed: n at t=1.50s, no send acknowledged after it"
    )
