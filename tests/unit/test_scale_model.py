"""The scale model of rank 0 (``bench/scale_model.py``) at a tiny size: its books, not its timings."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import fields
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model() -> ModuleType:
    """``bench/scale_model.py`` as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("scale_model", REPO / "bench" / "scale_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_model"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_range_is_assigned_once_and_finished(model: ModuleType, tmp_path: Path) -> None:
    r = model.run_model(3, 4, 300, check_ids=True, workdir=tmp_path, timeout_s=120)
    assert r.books_ok, r.books_problems
    assert r.finished == r.ranges == 300 and r.workers == 3 and r.slots == 4
    # one report or request per message: never a message per range at 0 s payloads
    assert 0 < r.messages_in < r.ranges and 0 < r.messages_out < r.ranges
    assert r.journal_bytes > 0 and r.steps > 0
    assert r.rank0_cpu_s > 0 and r.us_per_range > 0


def test_ranges_that_take_time_finish_too(model: ModuleType, tmp_path: Path) -> None:
    r = model.run_model(2, 3, 60, payload_s=0.002, check_ids=True, workdir=tmp_path, timeout_s=120)
    assert r.books_ok, r.books_problems
    assert r.finished == 60 and 0 < r.utilisation <= 1


def test_the_books_check_sees_a_range_assigned_twice(model: ModuleType, tmp_path: Path) -> None:
    settings = model.model_settings()
    hub = model.Hub((1, 2))
    workers = [model.SimWorker(hub, rank, 2, 0.0, settings) for rank in (1, 2)]
    for worker, ids in zip(workers, (["a", "b"], ["b"]), strict=True):
        worker.ids = ids
        worker.assigned = worker.finished = len(ids)
    problems = model.check_books(workers, 2, 2, {"messages": {"in": 3, "out": 3}})
    assert any("3 assignments for 2 ranges" in p for p in problems)
    assert any("assigned more than once: ['b']" in p for p in problems)
    assert model.check_books(workers[:1], 2, 2, {"messages": {"in": 1, "out": 1}}) == ()


def result(model: ModuleType, workers: int, ranges: int, **figures: Any) -> Any:
    """A `ModelResult` with the figures that matter to a verdict (the rest zero)."""
    zero = {f.name: 0 for f in fields(model.ModelResult)}
    base = zero | {"workers": workers, "slots": 128, "ranges": ranges, "payload_s": 0.0}
    return model.ModelResult(**(base | {"books_ok": True, "books_problems": ()} | figures))


def test_memory_is_judged_against_the_1k_range_run_of_the_same_shape(model: ModuleType) -> None:
    runs = [
        result(model, 64, 1_000_000, rss_end_mb=150.0, rss_delta_mb=90.0),
        result(model, 512, 1_000_000, rss_end_mb=260.0, rss_delta_mb=200.0),
        result(model, 2048, 1_000_000, rss_end_mb=300.0),  # no baseline: not compared
    ]
    baselines = [
        result(model, 512, 1000, rss_end_mb=100.0, rss_delta_mb=30.0),
        result(model, 64, 1000, rss_end_mb=60.0),
    ]
    pairs = model.pair_baselines(runs, baselines)
    assert [(c.run.workers, c.baseline.workers, c.above_mb) for c in pairs] == [
        (64, 64, 90.0),
        (512, 512, 160.0),
    ]
    assert pairs[1].delta_above_mb == 170.0
    memory = [v for v in model.verdicts(runs, baselines) if v.name.startswith("rank-0 memory")]
    assert [v.ok for v in memory] == [True, False]
    assert memory[1].line().startswith("- FAIL: rank-0 memory at 512 x 128, 1,000,000 ranges, above the same")
    assert "+160 MB" in memory[1].detail
    table = model.memory_table(pairs)
    assert (
        table[3]
        == "| 512 x 128 | 1,000,000 | 260 MB | 1,000 | 100 MB | +160 MB | <= 100 MB at 1,000,000 ranges |"
    )


def test_the_cpu_target_is_judged_at_512_by_128_and_a_million_ranges(model: ModuleType) -> None:
    runs = [
        result(model, 64, 1_000_000, us_per_range=5.0),  # not the target's workers: no verdict
        result(model, 512, 1_000_000, us_per_range=9.5, rank0_rate=105_000.0),
        result(model, 512, 1_000_000, us_per_range=10.5, payload_s=0.65),  # payloads: shown only
        result(model, 512, 200_000, us_per_range=12.0),  # too small: shown only
        result(model, 512, 1_000_000, us_per_range=10.2),
    ]
    found = model.verdicts(runs)
    assert [v.ok for v in found] == [True, None, None, False]
    assert found[0].line() == (
        "- PASS: rank-0 CPU per range at 512 x 128, 1,000,000 ranges, 0 s: 9.5 µs, 105,000 ranges/s on one "
        "core (target <= 10 µs, i.e. >= 100,000 ranges/s)"
    )
    assert found[1].line().startswith("- not judged (the target is for 0 s payloads and 1,000,000 ranges)")


def test_a_run_in_its_own_process_comes_back(model: ModuleType, tmp_path: Path) -> None:
    r = model.run_isolated(2, 2, 40, check_ids=True, workdir=tmp_path, timeout_s=120)
    assert r.books_ok, r.books_problems
    assert r.finished == 40 and r.rss_end_mb > 0
