"""``hpcpilot status`` / ``report`` as commands: exit codes and output on small work directories."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hpcpilot.cli import main


def test_not_a_directory_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_empty_workdir_has_no_journal_yet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "unknown (no journal yet)" in out and "journal  : none yet" in out


def test_report_without_matplotlib_fails_with_the_extra_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    record = {"t": 1.0, "t_end": 2.0, "ev": "finished", "job": 3, "rank": 1, "ids": ["x"], "nevents": [5]}
    (tmp_path / "journal.jsonl").write_text(json.dumps(record) + "\n")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["report", str(tmp_path), "--plot", str(tmp_path / "p.png")]) == 2
    captured = capsys.readouterr()
    assert "hpcpilot[plot]" in captured.err
    assert captured.out.splitlines()[-1] == "none"  # the tables came first: no failures
    rows = [line.split() for line in captured.out.splitlines()]
    assert ["3", "starting", "0", "1", "0", "1", "5", "-", "-", "-"] in rows
