"""Tests of the demo event-simulation payload (``python -m hpcpilot.demo.simulate``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from hpcpilot.data.checksums import adler32_of_file
from hpcpilot.demo import simulate
from hpcpilot.model.errors import PayloadError

REPO = Path(__file__).resolve().parents[2]


def run_sim(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "hpcpilot.demo.simulate", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_range(
    tmp_path: Path, name: str, first: int, last: int, *extra: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    output = tmp_path / name
    proc = run_sim(
        "--range-id",
        f"1-2-3-{first}-1",
        "--first",
        str(first),
        "--last",
        str(last),
        "--output",
        str(output),
        *extra,
        cwd=tmp_path,
    )
    return proc, output


def read_all(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    with h5py.File(path, "r") as handle:
        return handle["events"][()], handle["particles"][()], dict(handle.attrs)


def test_per_range_output_has_the_range_events(tmp_path: Path) -> None:
    proc, output = run_range(tmp_path, "out.h5", 3, 12, "--seed", "7", "--lfn", "EVNT.1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    events, particles, attrs = read_all(output)

    assert events.dtype == simulate.EVENT_DTYPE
    assert particles.dtype == simulate.PARTICLE_DTYPE
    np.testing.assert_array_equal(events["event_number"], np.arange(3, 13))
    assert (events["n_particles"] >= 1).all()
    assert (events["seed"] == 7).all()
    assert events["n_particles"].sum() == len(particles)
    np.testing.assert_array_equal(np.unique(particles["event_number"]), np.arange(3, 13, dtype=np.int64))
    p2 = particles["px"] ** 2 + particles["py"] ** 2 + particles["pz"] ** 2
    np.testing.assert_allclose(particles["e"] ** 2, p2 + particles["m"] ** 2)
    assert set(np.unique(particles["m"])) <= {0.1396, 0.4937, 0.9383}
    first = particles[particles["event_number"] == 3]
    np.testing.assert_allclose(events["sum_e"][0], first["e"].sum())
    np.testing.assert_allclose(events["sum_pt"][0], np.hypot(first["px"], first["py"]).sum())
    assert attrs["eventRangeID"] == "1-2-3-3-1"
    assert (attrs["startEvent"], attrs["lastEvent"], attrs["nEvents"]) == (3, 12, 10)
    assert (attrs["seed"], attrs["LFN"]) == (7, "EVNT.1")
    assert attrs["generator"] == "hpcpilot.demo.simulate"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]  # no temporary file left


def test_same_range_twice_gives_identical_files(tmp_path: Path) -> None:
    first, a = run_range(tmp_path, "a.h5", 1, 5)
    second, b = run_range(tmp_path, "b.h5", 1, 5)
    other_seed, c = run_range(tmp_path, "c.h5", 1, 5, "--seed", "99")
    assert first.returncode == second.returncode == other_seed.returncode == 0

    assert a.read_bytes() == b.read_bytes()
    assert adler32_of_file(a) == adler32_of_file(b)
    assert adler32_of_file(a) != adler32_of_file(c)


def test_event_content_does_not_depend_on_the_range(tmp_path: Path) -> None:
    wide, wide_out = run_range(tmp_path, "wide.h5", 1, 10)
    narrow, narrow_out = run_range(tmp_path, "narrow.h5", 5, 6)
    assert wide.returncode == narrow.returncode == 0
    wide_events, wide_particles, _ = read_all(wide_out)
    narrow_events, narrow_particles, _ = read_all(narrow_out)

    selected = np.isin(wide_particles["event_number"], [5, 6])
    np.testing.assert_array_equal(wide_particles[selected], narrow_particles)
    np.testing.assert_array_equal(wide_events[4:6], narrow_events)


def request(range_id: str, first: int, last: int, output: str) -> str:
    return json.dumps(
        {
            "eventRangeID": range_id,
            "startEvent": first,
            "lastEvent": last,
            "LFN": "EVNT.pool.root.1",
            "GUID": "ABC",
            "scope": "mc",
            "outputFile": output,
        }
    )


def without_timing(reply: dict[str, Any]) -> dict[str, Any]:
    if reply["status"] == "finished":
        assert isinstance(reply.pop("cpu"), float)
        assert reply.pop("wall") >= 0.0
    return reply


def test_streaming_mode_answers_every_line(tmp_path: Path) -> None:
    lines = [
        request("r1", 1, 3, "r1.h5"),
        "",
        request("r2", 4, 4, "r2.h5"),
        "{not json",
        request("bad", 5, 8, "bad.h5"),
        json.dumps({"eventRangeID": "r4", "startEvent": 1}),
        request("r3", 9, 12, "r3.h5"),
    ]
    proc = run_sim("--stream", "--fail-events", "7", cwd=tmp_path, stdin="\n".join(lines) + "\n")
    assert proc.returncode == 0, proc.stderr
    replies = [without_timing(json.loads(line)) for line in proc.stdout.splitlines()]

    def finished(range_id: str, n: int) -> dict[str, Any]:
        return {
            "eventRangeID": range_id,
            "status": "finished",
            "outputFile": f"{range_id}.h5",
            "nEvents": n,
        }

    assert [(r["eventRangeID"], r["status"]) for r in replies] == [
        ("r1", "finished"),
        ("r2", "finished"),
        (None, "failed"),
        ("bad", "failed"),
        ("r4", "failed"),
        ("r3", "finished"),
    ]
    assert replies[0] == finished("r1", 3)
    assert replies[1] == finished("r2", 1)
    assert replies[5] == finished("r3", 4)
    assert {r["errorCode"] for r in replies if r["status"] == "failed"} == {1305}
    assert "7" in replies[3]["errorDiag"]
    assert "outputFile" in replies[4]["errorDiag"]
    assert not (tmp_path / "bad.h5").exists()
    events, _, attrs = read_all(tmp_path / "r3.h5")
    np.testing.assert_array_equal(events["event_number"], [9, 10, 11, 12])
    assert attrs["LFN"] == "EVNT.pool.root.1"


def test_streaming_first_failure_mode_then_retry_succeeds(tmp_path: Path) -> None:
    line = request("r1", 1, 3, "r1.h5")
    options = ("--stream", "--fail-events", "2", "--fail-mode", "first")
    proc = run_sim(*options, cwd=tmp_path, stdin=f"{line}\n{line}\n")
    assert proc.returncode == 0, proc.stderr
    statuses = [json.loads(reply)["status"] for reply in proc.stdout.splitlines()]
    assert statuses == ["failed", "finished"]


def test_fail_events_exit_code_and_first_mode(tmp_path: Path) -> None:
    failing, output = run_range(tmp_path, "f.h5", 1, 5, "--fail-events", "3,40")
    assert failing.returncode == 3
    assert "3" in failing.stderr
    assert not output.exists()
    unaffected, other = run_range(tmp_path, "g.h5", 6, 8, "--fail-events", "3,40")
    assert unaffected.returncode == 0, unaffected.stderr
    assert other.exists()

    once = ("--fail-events", "4", "--fail-mode", "first")
    attempt1, retried = run_range(tmp_path, "h.h5", 1, 5, *once)
    assert attempt1.returncode == 3
    assert not retried.exists()
    assert simulate.failed_once_marker(retried).exists()
    attempt2, _ = run_range(tmp_path, "h.h5", 1, 5, *once)
    assert attempt2.returncode == 0, attempt2.stderr
    assert retried.exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run_sim("--first", "1", cwd=tmp_path).returncode == 2
    proc, _ = run_range(tmp_path, "x.h5", 5, 2)
    assert proc.returncode == 2


@pytest.mark.parametrize(
    ("message", "diag"),
    [
        ([1, 2], "not an object"),
        ({"eventRangeID": "r"}, "lacks"),
        (json.loads(request("r", 1, True, "o.h5")), "lastEvent"),
        (json.loads(request("r", 1, 2, "")), "outputFile"),
    ],
)
def test_parse_request_rejects_bad_requests(message: Any, diag: str) -> None:
    with pytest.raises(PayloadError, match=diag):
        simulate.parse_request(message)


def test_handle_line_rejects_descending_range(tmp_path: Path) -> None:
    line = request("r9", 5, 2, str(tmp_path / "r9.h5"))
    reply = simulate.handle_line(line, seed=1, plan=simulate.FailurePlan())
    assert reply["status"] == "failed"
    assert reply["eventRangeID"] == "r9"
    assert not (tmp_path / "r9.h5").exists()
