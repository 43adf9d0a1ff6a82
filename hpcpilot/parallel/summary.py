"""The end-of-run summary (``summary.json``) from the coordinator's books. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hpcpilot.model.rates import ranges_per_s
from hpcpilot.parallel.books import Books, JobBook
from hpcpilot.parallel.outcome import finished_outputs, range_counts
from hpcpilot.parallel.resume import DoneJob


def run_summary(
    books: Books,
    *,
    workdir: str,
    wall_s: float,
    bad_jobs: Sequence[dict[str, Any]],
    drained_by: str | None,
    error: str | None,
    messages: dict[str, int] | None = None,
    cut: int = 0,
) -> dict[str, Any]:
    """The summary of a run: time, utilisation, ranges, and every job with its outputs.

    Parameters
    ----------
    books
        The coordinator's books at the end of the run.
    workdir
        The work directory.
    wall_s
        The run's wall-clock seconds.
    bad_jobs
        Job definitions that could not be parsed (``PandaID``, ``error_code``, ``error_diag``).
    drained_by
        What drained the run, if anything did (a signal's name, ``REACHED_MAX_TIME`` for the end of
        the allocation, ``KILLED_BY_PANDA``).
    error
        The error that ended the run, if one did.
    messages
        Messages rank 0 received from and sent to workers (``in``, ``out``).
    cut
        Ranges whose payload was killed at the end of the run.
    """
    cores = books.total_cores
    busy = sum(w.busy_core_s for w in books.workers.values())
    jobs = [job_summary(b) for b in books.jobs.values()]
    jobs.extend(
        {
            "PandaID": b["PandaID"],
            "kind": "invalid",
            "state": "failed",
            "error_code": b["error_code"],
            "error_diag": b["error_diag"],
            "outputs": [],
            "n_events": 0,
        }
        for b in bad_jobs
    )
    not_done = sum(b.queued + b.in_flight + b.unfetched for b in books.jobs.values() if b.job.event_service)
    wall = round(wall_s, 3)
    final_here = books.ranges_finished + books.ranges_fatal - books.ranges_restored
    return {
        "workdir": workdir,
        "wall_s": wall,
        "workers": len(books.workers),
        "lost_ranks": sorted(w.rank for w in books.workers.values() if w.lost),
        "cores": cores,
        "utilisation": utilisation(busy, cores, wall_s),
        "busy_core_s": round(busy, 3),
        "ranges": {
            "total": books.ranges_total,
            "finished": books.ranges_finished,
            "fatal": books.ranges_fatal,
            "failed_attempts": books.ranges_failed_attempts,
            "not_done": not_done,
            "cut": cut,
        },
        # this run's: the ranges it made final per second of its wall time (`hpcpilot.model.rates`)
        "ranges_per_s": ranges_per_s(final_here, wall),
        "messages": messages or {"in": 0, "out": 0},
        "drained_by": drained_by,
        "error": error,
        "jobs": jobs,
    }


def utilisation(busy_core_s: float, cores: int, wall_s: float) -> float:
    """The busy fraction of the workers' core time, between 0 and 1 (4 decimals).

    Each slot counts the cores it held (never more than its node's), so ``busy_core_s`` cannot
    exceed ``cores * wall_s`` but by the clocks' jitter; the result is clamped to 1 for that.
    """
    if cores <= 0 or wall_s <= 0:
        return 0.0
    return round(min(max(busy_core_s / (cores * wall_s), 0.0), 1.0), 4)


def job_summary(book: JobBook) -> dict[str, Any]:
    """One job's part of the summary."""
    entry: dict[str, Any] = {
        "PandaID": book.job.panda_id,
        "kind": "event service" if book.job.event_service else "plain",
        "state": book.state.value,
        "error_code": int(book.error_code) if book.error_code is not None else 0,
        "error_diag": book.error_diag,
        "n_events": book.n_events,
        "cpu_s": round(book.cpu_s, 3),
        "outputs": [{"path": o.path, "fsize": o.fsize, "adler32": o.adler32} for o in book.outputs],
    }
    if book.resumable:
        entry["resumable"] = True  # ended by the run, its work intact: `run --resume` may finish it
    if book.job.event_service:
        entry["ranges"] = range_counts(book)
        outs = [out for _, out in finished_outputs(book)]
        entry["range_outputs"] = {"count": len(outs), "bytes": sum(o.fsize for o in outs)}
    return entry


def merge_summaries(
    earlier: Mapping[str, Any], current: dict[str, Any], journaled: Sequence[DoneJob] = ()
) -> dict[str, Any]:
    """The summary of a resumed run, keeping what the runs before it ended.

    The jobs of the ``earlier`` summary that this run did not take up again come first, then jobs
    the journal has as done (``journaled``) that neither summary has (a run killed after a job's final
    record, before its summary), then this run's jobs. The range totals add those of the jobs kept;
    everything else (time, utilisation, what drained the run) is this run's, and ``runs`` counts
    the runs the summary covers. Entries of ``earlier`` not shaped as hpcpilot writes them are left
    out.
    """
    jobs = earlier.get("jobs")
    now = {job["PandaID"] for job in current["jobs"]}
    kept = [job for job in jobs if _job_entry_ok(job)] if isinstance(jobs, list) else []
    kept = [job for job in kept if job["PandaID"] not in now]
    known = now | {job["PandaID"] for job in kept}
    kept += [journaled_job(done) for done in journaled if done.panda_id not in known]
    if not kept and not isinstance(jobs, list):
        return current
    merged = dict(current)
    merged["jobs"] = [*kept, *current["jobs"]]
    ranges = dict(current["ranges"])
    for job in kept:
        counts = job.get("ranges") or {}
        for key in ("total", "finished", "fatal", "failed_attempts"):
            ranges[key] = ranges.get(key, 0) + counts.get(key, 0)
        left = counts.get("total", 0) - counts.get("finished", 0) - counts.get("fatal", 0)
        ranges["not_done"] = ranges.get("not_done", 0) + max(left, 0)
    merged["ranges"] = ranges
    runs = earlier.get("runs", 1)
    merged["runs"] = (runs if isinstance(runs, int) and runs > 0 else 1) + 1
    return merged


def journaled_job(done: DoneJob) -> dict[str, Any]:
    """A job's part of the summary as the journal tells it (no diagnosis, no output files)."""
    entry: dict[str, Any] = {
        "PandaID": done.panda_id,
        "kind": "event service" if done.event_service else "plain",
        "state": done.state,
        "error_code": done.code,
        "error_diag": "",
        "n_events": done.n_events,
        "outputs": [],
    }
    if done.event_service:
        entry["ranges"] = {
            "total": done.ranges,
            "finished": done.finished,
            "fatal": done.fatal,
            "failed_attempts": done.failed_attempts,
        }
    return entry


_ENTRY_FIELDS = {"PandaID": int, "kind": str, "state": str, "error_code": int, "error_diag": str}
_RANGE_FIELDS = ("total", "finished", "fatal", "failed_attempts")
_FILE_FIELDS = {"path": str, "fsize": int, "adler32": str}


def _job_entry_ok(job: Any) -> bool:
    """Whether ``job`` is a summary job entry as `job_summary` writes it (what the text needs)."""
    if not isinstance(job, dict):
        return False
    if not all(_is(job.get(name), kind) for name, kind in _ENTRY_FIELDS.items()):
        return False
    outputs = job.get("outputs")
    if not isinstance(outputs, list) or not all(
        isinstance(f, dict) and all(_is(f.get(n), k) for n, k in _FILE_FIELDS.items()) for f in outputs
    ):
        return False
    if job["kind"] == "event service":
        counts = job.get("ranges")
        if not isinstance(counts, dict) or not all(_is(counts.get(n), int) for n in _RANGE_FIELDS):
            return False
        if not _is(job.get("n_events"), int):
            return False
    made = job.get("range_outputs")
    return made is None or (
        isinstance(made, dict) and _is(made.get("count"), int) and _is(made.get("bytes"), int)
    )


def _is(value: Any, kind: type) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)
