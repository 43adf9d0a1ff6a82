"""The dispatch benchmark's verdicts (``bench/dispatch.py``): issue 16's targets from given runs."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    """``bench/dispatch.py`` as a module (bench/ is not a package; it imports its sibling ``_launch``)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_dispatch", BENCH / "dispatch.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_dispatch"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))
        sys.modules.pop("bench_dispatch", None)


def run(bench: ModuleType, system: str, batch: int, rate: float, payload_s: float = 0.0, **kw: Any) -> Any:
    """A `Run` with the figures that matter to a verdict."""
    fields = {"n_planned": 1000, "n_done": 1000, "wall_s": 1.0, "utilisation": 0.0, "workers": 7} | kw
    return bench.Run(system=system, batch=batch, payload_s=payload_s, rate=rate, **fields)


def throughput(bench: ModuleType, figures: dict[int, tuple[float, float, float]]) -> list[Any]:
    """Runs at 0 s payloads from batch -> (hpcpilot, bare, pool) rates."""
    return [
        run(bench, system, batch, rate)
        for batch, rates in figures.items()
        for system, rate in zip(("hpcpilot", "bare", "pool"), rates, strict=True)
    ]


def test_dispatch_targets_are_against_the_pool_and_a_quarter_of_bare_at_64(bench: ModuleType) -> None:
    runs = throughput(
        bench, {1: (5000, 50000, 4000), 8: (20000, 300000, 30000), 64: (400000, 1200000, 200000)}
    )
    lines, targets = bench.throughput_table(runs)
    assert targets == {
        "dispatch batch 1: hpcpilot >= pool": True,
        "dispatch batch 8: hpcpilot >= pool": False,
        "dispatch batch 64: hpcpilot >= pool": True,
        "dispatch batch 64: hpcpilot >= 25% of bare": True,
    }
    assert "hpcpilot / pool" in lines[0] and "80" not in "".join(lines)
    row1, row8, row64 = lines[2:]
    assert "| 1.25 | 10.0% |" in row1 and row1.endswith("| >= pool | PASS |")
    assert "| 0.67 | 6.7% |" in row8 and row8.endswith("| FAIL |")
    assert "| 2.00 | 33.3% |" in row64 and row64.endswith("| >= pool, >= 25% of bare | PASS |")


def test_a_quarter_of_bare_is_judged_at_batch_64_only(bench: ModuleType) -> None:
    runs = throughput(bench, {8: (20000, 1000000, 10000), 64: (240000, 1000000, 200000)})
    lines, targets = bench.throughput_table(runs)
    assert targets["dispatch batch 8: hpcpilot >= pool"]
    assert not targets["dispatch batch 64: hpcpilot >= 25% of bare"]
    assert targets["dispatch batch 64: hpcpilot >= pool"]
    assert lines[-1].endswith("| FAIL |") and len(targets) == 3


def test_a_missing_yardstick_run_fails_its_target(bench: ModuleType) -> None:
    runs = [r for r in throughput(bench, {64: (400000, 1000000, 1)}) if r.system != "pool"]
    lines, targets = bench.throughput_table(runs)
    assert targets == {
        "dispatch batch 64: hpcpilot >= pool": False,
        "dispatch batch 64: hpcpilot >= 25% of bare": True,
    }
    assert "| 400,000 | - | 1,000,000 | 1,000/-/1,000 | - | 40.0% |" in lines[2]


def test_utilisation_is_judged_over_the_whole_run(bench: ModuleType) -> None:
    """The journal window leaves the start-up out: ``summary.json``'s figure decides."""
    runs = [
        run(bench, "hpcpilot", 64, 0, 0.1, utilisation=0.99, summary_utilisation=0.955, workers=15),
        run(bench, "hpcpilot", 64, 0, 0.01, utilisation=0.97, summary_utilisation=0.91, workers=15),
        run(bench, "bare", 1, 0, 0.1, utilisation=0.99),
        run(bench, "pool", 1, 0, 0.1, utilisation=0.98),
    ]
    lines, targets = bench.utilisation_table(runs)
    assert targets == {
        "utilisation 10 ms, whole run, 15 slots >= 90%": True,
        "utilisation 100 ms, whole run, 15 slots >= 96%": False,
    }
    ten, hundred = lines[2:]
    assert ten.startswith("| 10 ms | 15 |") and "| - | - | >= 90% | PASS |" in ten
    assert "| 95.5% | - | 99.0% | 99.0% | 98.0% | >= 96% | FAIL |" in hundred


def test_the_report_lists_the_new_targets(bench: ModuleType) -> None:
    plan = bench.make_plan(8, False, {})
    assert plan.for_utilisation().workers == 15 and plan.workers == 7
    assert bench.make_plan(8, True, {}).for_utilisation().ranks == 8
    runs = throughput(bench, {1: (5000, 50000, 4000)})
    text, targets = bench.report(plan, runs, [])
    assert "utilisation at 16 ranks (15 slots)" in text
    assert "- PASS: dispatch batch 1: hpcpilot >= pool" in text
    assert targets == {"dispatch batch 1: hpcpilot >= pool": True}
