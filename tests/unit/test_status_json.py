"""``hpcpilot status --json`` / ``report --json``: the documents, their schemas, and the text beside them.

The real-run tests are in ``tests/e2e/test_status_json_run.py``; here synthetic work directories: a run
going on (no ``end`` record, a torn last line), an empty one, a summary of the wrong shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.cli import main
from hpcpilot.monitor.statusjson import attribute_docs, dumps, report_schema, status_schema
from hpcpilot.monitor.statusview import REPORT_SCHEMA, STATUS_SCHEMA, NodeRow
from hpcpilot.monitor.timeseries import TimeSeriesWriter
from tests.conftest import REPO
from tests.schema_check import problems
from tests.unit.test_runview import T0, records

SCHEMAS = REPO / "docs" / "schemas"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def documents(workdir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    status = json.loads(run_cli(["status", str(workdir), "--json"], capsys))
    report = json.loads(run_cli(["report", str(workdir), "--json"], capsys))
    assert problems(status, status_schema()) == []
    assert problems(report, report_schema()) == []
    return status, report


def test_the_published_schemas_are_those_of_the_code(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/schemas/ is generated from the views: regenerate with `hpcpilot status --json-schema`."""
    for command, schema in (("status", status_schema()), ("report", report_schema())):
        published = (SCHEMAS / f"{command}.schema.json").read_text()
        regenerate = f"hpcpilot {command} --json-schema > docs/schemas/{command}.schema.json"
        assert published == dumps(schema), f"the view changed: regenerate the schema ({regenerate})"
        assert json.loads(run_cli([command, "--json-schema"], capsys)) == schema
    assert status_schema()["properties"]["schema"]["const"] == STATUS_SCHEMA == "hpcpilot.status/1"
    assert report_schema()["properties"]["schema"]["const"] == REPORT_SCHEMA == "hpcpilot.report/1"


def test_every_field_is_described() -> None:
    def walk(schema: dict[str, Any], where: str) -> list[str]:
        out = []
        for name, prop in schema.get("properties", {}).items():
            if not prop.get("description"):
                out.append(f"{where}.{name}")
            inner = prop.get("items", prop)
            out += walk(inner, f"{where}.{name}") if inner is not schema else []
        return out

    assert walk(status_schema(), "status") == [] and walk(report_schema(), "report") == []
    assert attribute_docs(NodeRow)["busy_slot_s"].startswith("Its busy slot-seconds")


def test_the_checker_rejects_what_breaks_the_schema() -> None:
    schema = status_schema()
    assert problems({"schema": STATUS_SCHEMA}, schema)  # keys missing
    assert any("'extra'" in p for p in problems({"extra": 1}, schema))
    rate = schema["properties"]["rate"]
    good = {"ranges_per_s": 1.5, "over": "run", "window_s": None, "source": "summary"}
    assert problems(good, rate) == []
    assert problems({**good, "over": "week"}, rate) and problems({**good, "ranges_per_s": "1.5"}, rate)
    assert problems({**good, "window_s": True}, rate)


def write_going_run(workdir: Path) -> None:
    """A run going on on another host: journal without ``end`` (torn last line), monitor.h5, no summary."""
    text = "\n".join(json.dumps(r) for r in records(with_new_kinds=True))
    (workdir / "journal.jsonl").write_text(text + '\n{"t": 1, "ev": "finis')
    writer = TimeSeriesWriter(workdir / "monitor.h5")
    writer.add_node_row(1, "nid001", {"t": T0 + 1, "busy_slots": 4, "slots": 4, "load1": 3.5})
    writer.add_node_row(3, "nid003", {"t": T0 + 2, "busy_slots": 1, "slots": 4})
    writer.add_job_row(5, 1, {"t": T0 + 2, "rss_kb": 2048, "cpu_s": 12.5})
    writer.flush()


def test_a_run_going_on_gives_valid_documents_that_match_the_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_going_run(tmp_path)
    status, report = documents(tmp_path, capsys)
    assert status["state"] == "active"  # another host; monitor.h5 was just written
    assert status["ranges"] == {"total": 10, "finished": 4, "fatal": 1, "failed_attempts": 3}
    assert status["rate"] == {"ranges_per_s": 1.25, "over": "window", "window_s": 120.0, "source": "journal"}
    assert status["eta_s"] == pytest.approx(5 / 1.25)
    assert (
        status["journal"]["ended"] is False and status["journal"]["records"] == 12
    )  # the torn line is skipped
    assert status["run"] == {"host": "login1", "pid": 4242, "ranks": 3, "resume": False, "t": T0}
    assert [w["rank"] for w in status["workers"]] == [1, 2, 3]  # rank 3 only in monitor.h5
    w1 = status["workers"][0]
    assert (w1["host"], w1["load1"], w1["busy_slots"], w1["sample_t"]) == ("nid001", 3.5, 4.0, T0 + 1)
    assert status["workers"][1]["sample_t"] is None
    text = run_cli(["status", str(tmp_path)], capsys)
    assert "rate     : 1.25 ranges/s (over the last 120 s), ETA 4s" in text
    assert report["run"] is None and report["journal"]["ended"] is False
    (job,) = report["jobs"]
    assert (job["panda_id"], job["state"], job["finished"], job["fatal"], job["total"]) == (
        5,
        "running",
        4,
        1,
        10,
    )
    assert (job["events"], job["cpu_s"], job["max_rss_kb"], job["max_pss_kb"]) == (40, 12.5, 2048, None)
    assert [(n["rank"], n["host"], n["finished"], n["failures"]) for n in report["nodes"]] == [
        (1, "nid001", 4, 2),
        (2, "nid002", 0, 1),
        (3, "nid003", 0, 0),
    ]
    assert report["nodes"][1]["busy_slot_s"] is None  # no table for rank 2
    assert [(f["code"], f["count"], f["example"]) for f in report["failures"]] == [
        (1305, 2, "exit 4"),
        (1150, 1, "looping"),
    ]


def test_an_empty_work_directory_gives_valid_documents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = documents(tmp_path, capsys)
    assert status["state"] == "unknown" and status["run"] is None and status["jobs"] == []
    assert status["journal"] == {"records": 0, "first_t": None, "last_t": None, "ended": False}
    assert report["jobs"] == [] and report["nodes"] == [] and report["failures"] == []


def test_a_summary_of_the_wrong_shape_is_not_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recs = [*records(with_new_kinds=True), {"t": T0 + 6, "ev": "end", "drained_by": None}]
    (tmp_path / "journal.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    bad = {"wall_s": "long", "workers": 2.5, "cores": True, "utilisation": None, "ranges_per_s": "fast"}
    (tmp_path / "summary.json").write_text(json.dumps({**bad, "jobs": [{"PandaID": "5", "cpu_s": 1}, 7]}))
    status, report = documents(tmp_path, capsys)
    assert status["state"] == "ended"
    # no usable figure in the summary: the journal's, over the run (5 ranges final in 6 s)
    assert status["rate"] == {"ranges_per_s": 5 / 6, "over": "run", "window_s": None, "source": "journal"}
    assert report["run"] == {
        "wall_s": 0.0,
        "workers": 0,
        "cores": 0,
        "utilisation": 0.0,
        "ranges_per_s": None,
    }
    assert report["jobs"][0]["cpu_s"] is None


def test_an_ended_run_shows_the_summarys_rate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recs = [*records(with_new_kinds=True), {"t": T0 + 6, "ev": "end", "drained_by": None}]
    (tmp_path / "journal.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    summary = {
        "wall_s": 5.5,
        "workers": 2,
        "cores": 8,
        "utilisation": 0.5,
        "ranges_per_s": 5 / 5.5,
        "jobs": [],
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    status, report = documents(tmp_path, capsys)
    assert status["rate"] == {"ranges_per_s": 5 / 5.5, "over": "run", "window_s": None, "source": "summary"}
    assert report["run"]["ranges_per_s"] == 5 / 5.5
    assert "rate     : 0.91 ranges/s (over the run), ETA -" in run_cli(["status", str(tmp_path)], capsys)
    assert "utilisation 50.0 %, 0.91 ranges/s" in run_cli(["report", str(tmp_path)], capsys)


def test_json_needs_a_work_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--json"]) == 2
    assert "work directory is missing" in capsys.readouterr().err


def test_an_earlier_runs_summary_is_not_this_runs_rate(tmp_path: Path) -> None:
    from hpcpilot.monitor.runview import liveness, run_view
    from hpcpilot.monitor.statusview import status_rate

    recs = [*records(with_new_kinds=True), {"t": T0 + 6, "ev": "end", "drained_by": None}]
    view = run_view(recs)
    live = liveness(view, T0 + 10, "x", None)
    summary = {"ranges_per_s": 9.0}
    assert status_rate(view, live, summary, summary_t=T0 + 7).source == "summary"
    older = status_rate(view, live, summary, summary_t=T0 - 100)  # written before this run started
    assert (older.source, older.ranges_per_s) == ("journal", 5 / 6)
