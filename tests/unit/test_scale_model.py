"""The scale model of rank 0 (``bench/scale_model.py``) at a tiny size: its books, not its timings."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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
