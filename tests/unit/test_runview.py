"""``hpcpilot status`` / ``report`` logic from a synthetic journal: counts, rate, liveness, tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hpcpilot.model.ranges import EventRange, range_columns
from hpcpilot.monitor.present import busy_slot_seconds, format_status, report_tables
from hpcpilot.monitor.runview import liveness, run_view
from hpcpilot.monitor.timeseries import MonitorData, Table, TimeSeriesWriter, read_series
from hpcpilot.runtime.journal import read_journal

T0 = 1_700_000_000.0


def records(*, with_new_kinds: bool) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = []
    if with_new_kinds:
        recs += [
            {"t": T0, "ev": "run", "host": "login1", "pid": 4242, "ranks": 3, "resume": False},
            {"t": T0, "ev": "worker", "rank": 1, "host": "nid001", "cores": 4},
            {"t": T0, "ev": "worker", "rank": 2, "host": "nid002", "cores": 4},
        ]
    recs.append({"t": T0, "ev": "job", "job": 5, "state": "starting"})
    if with_new_kinds:
        recs.append(
            {
                "t": T0,
                "ev": "ranges",
                "job": 5,
                **range_columns([EventRange(f"1-5-1-{i}-1", i, i) for i in range(1, 11)]),
            }
        )
    ids = [f"1-5-1-{i}-1" for i in range(1, 11)]
    recs += [
        {"t": T0 + 1, "t_end": T0 + 1, "ev": "assigned", "job": 5, "rank": 1, "ids": ids[:5]},
        {"t": T0 + 1, "t_end": T0 + 1, "ev": "assigned", "job": 5, "rank": 2, "ids": ids[5:]},
        {"t": T0 + 2, "ev": "failed", "job": 5, "id": ids[0], "attempt": 1, "code": 1305, "diag": "exit 3"},
        {"t": T0 + 3, "ev": "failed", "job": 5, "id": ids[0], "attempt": 2, "code": 1305, "diag": "exit 4"},
        {"t": T0 + 3, "ev": "fatal", "job": 5, "id": ids[0], "code": 1305},
        {"t": T0 + 3, "ev": "failed", "job": 5, "id": ids[6], "attempt": 1, "code": 1150, "diag": "looping"},
        {
            "t": T0 + 2,
            "t_end": T0 + 4,
            "ev": "finished",
            "job": 5,
            "rank": 1,
            "ids": ids[1:5],
            "nevents": [10] * 4,
            "fsize": [100] * 4,
        },
    ]
    return recs


def test_counts_without_the_new_record_kinds() -> None:
    view = run_view(records(with_new_kinds=False))
    assert view.ranges_total == 10 and view.ranges_finished == 4 and view.ranges_fatal == 1
    assert view.failed_attempts == 3
    assert view.jobs[5].n_events == 40 and view.jobs[5].state == "running"
    assert view.workers[1].finished == 4 and view.workers[1].failures == 2 and view.workers[2].failures == 1
    assert view.workers[1].host == "" and view.run is None
    table = view.failure_table()
    assert [(f.code, f.count, f.example) for f in table] == [(1305, 2, "exit 4"), (1150, 1, "looping")]
    # the 4 finished ranges are spread over the record's span (at 2.5, 3, 3.5, 4 s), one range is
    # fatal at 3 s: 5 ranges final since the journal's first record (0 s), in 4 s
    assert view.rate() == 1.25
    assert view.eta_s() == (10 - 5) / view.rate()


def test_new_record_kinds_give_hosts_run_and_end() -> None:
    recs = records(with_new_kinds=True)
    view = run_view(recs)
    assert view.workers[2].host == "nid002" and view.workers[2].cores == 4
    assert view.run is not None and view.run.pid == 4242
    live = liveness(view, T0 + 5, "login1", pid_alive=True)
    assert live.state == "running"
    assert liveness(view, T0 + 5, "login1", pid_alive=False).state == "dead"
    assert liveness(view, T0 + 5, "other", pid_alive=None).state == "active"
    assert liveness(view, T0 + 5000, "other", pid_alive=None).state == "stale"
    # a run whose ranges take long: the time series, appended while workers sample, shows it lives
    assert liveness(view, T0 + 5000, "other", pid_alive=None, series_t=T0 + 4990).state == "active"
    ended = run_view([*recs, {"t": T0 + 6, "ev": "end", "drained_by": "SIGTERM"}])
    assert liveness(ended, T0 + 5000, "login1", pid_alive=False).state == "ended"
    assert ended.drained_by == "SIGTERM" and ended.eta_s() is None


def test_an_ended_run_has_the_rate_of_the_whole_run() -> None:
    """Every range finished in one journal record (t == t_end): the rate was 0.00 ranges/s."""
    ids = [f"1-5-1-{i}-1" for i in range(1, 11)]
    recs: list[dict[str, Any]] = [
        {"t": T0, "ev": "run", "host": "h", "pid": 1, "ranks": 1, "resume": False},
        {"t": T0 + 1, "t_end": T0 + 1, "ev": "assigned", "job": 5, "rank": 0, "ids": ids},
        {"t": T0 + 4, "t_end": T0 + 4, "ev": "finished", "job": 5, "rank": 0, "ids": ids[1:]},
        {"t": T0 + 4, "ev": "fatal", "job": 5, "id": ids[0], "code": 1305},
        {"t": T0 + 5, "ev": "end", "drained_by": None},
    ]
    view = run_view(recs)
    assert view.ended and view.rate() == 10 / 5  # 10 ranges final over the run's 5 s, as the summary
    going = run_view(recs[:-1])
    assert going.rate() == 10 / 4  # no end yet: up to the journal's last record
    # a resumed run: only what this run made final, over this run's time
    resumed = run_view(
        [
            *recs,
            {"t": T0 + 100, "ev": "run", "host": "h", "pid": 2, "ranks": 1, "resume": True},
            {"t": T0 + 102, "t_end": T0 + 102, "ev": "finished", "job": 5, "rank": 0, "ids": ids[1:]},
            {"t": T0 + 104, "ev": "end", "drained_by": None},
        ]
    )
    assert resumed.rate() == 0.0 and resumed.end_t == T0 + 104


def test_old_journal_with_a_later_summary_has_ended() -> None:
    view = run_view(records(with_new_kinds=False))
    assert liveness(view, T0 + 5000, "h", None, summary_t=T0 + 10).state == "ended"
    assert liveness(view, T0 + 5000, "h", None, summary_t=None).state == "stale"
    assert liveness(run_view([]), T0, "h", None).state == "unknown"


def test_torn_last_journal_line_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    text = "\n".join(json.dumps(r) for r in records(with_new_kinds=True))
    path.write_text(text + '\n{"t": 1, "ev": "finis')
    view = run_view(read_journal(path))
    assert view.ranges_finished == 4 and view.ranges_total == 10


def test_busy_slot_seconds_holds_each_value_until_the_next_row() -> None:
    table = Table({}, {"t": np.array([0.0, 2.0, 3.0, 10.0]), "busy_slots": np.array([4.0, np.nan, 1.0, 0.0])})
    assert busy_slot_seconds(table) == 4 * 3 + 1 * 7


def test_status_and_report_text(tmp_path: Path) -> None:
    writer = TimeSeriesWriter(tmp_path / "monitor.h5")
    writer.add_node_row(1, "nid001", {"t": T0 + 1, "busy_slots": 4, "slots": 4, "load1": 3.5})
    writer.add_node_row(1, "nid001", {"t": T0 + 3, "busy_slots": 0, "slots": 4})
    writer.add_job_row(5, 1, {"t": T0 + 2, "rss_kb": 2048, "cpu_s": 12.5})
    writer.flush()
    data = read_series(tmp_path / "monitor.h5")
    assert isinstance(data, MonitorData)
    view = run_view(records(with_new_kinds=True))
    live = liveness(view, T0 + 5, "x", None)
    status = format_status(view, live, data, "/w", now=T0 + 5)
    assert "5/10 done (50%): 4 finished, 1 fatal, 3 failed attempt(s)" in status
    assert "active" in status and "nid002" in status
    node_line = next(line for line in status.splitlines() if "nid001" in line)
    assert "3.5" in node_line  # the latest load
    report = report_tables(view, data, {"wall_s": 6.0, "workers": 2, "cores": 8, "utilisation": 0.5}, "/w")
    job_line = next(line for line in report.splitlines() if line.startswith("5 "))
    assert job_line.split() == ["5", "running", "0", "4", "1", "10", "40", "12.5", "2", "-"]
    node1 = next(line for line in report.splitlines() if line.startswith("rank 1"))
    # cores from the worker record; an older record says nothing of GPUs
    assert node1.split() == ["rank", "1", "nid001", "4", "2", "8.0", "4", "-", "-"]
    assert "1305      2  exit 4" in report and "1150      1  looping" in report


def test_ranges_journalled_again_are_counted_once() -> None:
    recs = records(with_new_kinds=True)
    again = [r for r in recs if r["ev"] in ("finished", "fatal")]
    view = run_view([*recs, {"t": T0 + 9, "ev": "run", "host": "h", "pid": 1, "resume": True}, *again])
    assert view.ranges_finished == 4 and view.ranges_fatal == 1 and view.jobs[5].n_events == 40
    assert view.workers[1].finished == 4 and len(view.finished_times) == 4
