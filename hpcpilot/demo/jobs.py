"""The demo job: one event-service job running `hpcpilot.demo.simulate`, in Harvester's shape."""

from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hpcpilot.model.layout import WorkLayout
from hpcpilot.runtime.atomic import write_json_atomic

DEMO_PANDA_ID = 1001
DEMO_OUTPUT = "HITS.demo._000001.h5"
DEMO_LOG = "log.demo._000001.tgz"


def demo_job(
    *,
    panda_id: int = DEMO_PANDA_ID,
    n_events: int = 2000,
    mode: str = "streaming",
    seed: int = 12345,
    sleep_per_event: float = 0.005,
    fail_events: Iterable[int] = (),
    fail_mode: str = "always",
    python: str = sys.executable,
) -> dict[str, Any]:
    """A PanDA job dict for an event-service job that simulates ``n_events`` events.

    Parameters
    ----------
    panda_id
        The job's PandaID.
    n_events
        Events in the job (``nEventsPerInputFile``, no input file).
    mode
        ``streaming`` (one long-lived payload per slot) or ``per_range`` (one process per range).
    seed
        The simulation's seed.
    sleep_per_event
        Extra seconds per event, to make the demo last long enough to watch.
    fail_events
        Events whose ranges fail (to show retries and fatal ranges).
    fail_mode
        ``always`` or ``first`` (fail only the first attempt).
    python
        The interpreter that runs the payload.
    """
    args = [
        "-m",
        "hpcpilot.demo.simulate",
        "--seed",
        str(seed),
        "--sleep-per-event",
        str(sleep_per_event),
    ]
    failing = ",".join(str(e) for e in fail_events)
    if failing:
        args += ["--fail-events", failing, "--fail-mode", fail_mode]
    if mode == "streaming":
        args.append("--stream")
    elif mode == "per_range":
        args += [
            "--range-id",
            "{eventRangeID}",
            "--first",
            "{startEvent}",
            "--last",
            "{lastEvent}",
            "--output",
            "{outputFile}",
            "--lfn",
            "{LFN}",
        ]
    else:
        raise ValueError(f"unknown demo mode {mode!r}: streaming or per_range")
    return {
        "PandaID": panda_id,
        "taskID": 42,
        "jobsetID": 7,
        "attemptNr": 1,
        "prodSourceLabel": "managed",
        "transformation": python,
        "jobPars": shlex.join(args),
        "eventService": "True",
        "coreCount": 1,
        "minRamCount": 2000,
        "nEventsPerInputFile": n_events,
        "inFiles": "",
        "outFiles": f"{DEMO_OUTPUT},{DEMO_LOG}",
        "scopeOut": "demo,demo",
        "realDatasets": "demo.HITS.hpcpilot,demo.log.hpcpilot",
        "logFile": DEMO_LOG,
        "logGUID": "5e1f8a7c-3b1d-4c2e-9f0a-000000001001",
        "scopeLog": "demo",
    }


def write_demo(workdir: Path, jobs: Iterable[dict[str, Any]], *, force: bool = False) -> Path:
    """Write ``jobs`` as ``HPCJobs.json`` into ``workdir`` (created if needed).

    Raises
    ------
    FileExistsError
        If ``workdir`` already holds a run (a journal) and ``force`` is not set. With ``force`` the
        earlier run's files are removed first.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    layout = WorkLayout(workdir)
    if layout.journal.exists():
        if not force:
            raise FileExistsError(f"{workdir} already holds a run ({layout.journal.name}); use --force")
        for path in (layout.journal, layout.results, layout.summary):
            path.unlink(missing_ok=True)
        shutil.rmtree(layout.log_dir, ignore_errors=True)
    job_list = list(jobs)
    for job in job_list:
        shutil.rmtree(layout.job_dir(int(job["PandaID"])), ignore_errors=True)
    path = workdir / "HPCJobs.json"
    write_json_atomic(path, {str(j["PandaID"]): j for j in job_list})
    return path
