"""A job's outcome from its books: final state, report, merge inputs. Pure functions, no I/O."""

from __future__ import annotations

import time
from pathlib import Path

from hpcpilot.comm.base import JobReport
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.ranges import RangeState
from hpcpilot.model.results import OutputFile
from hpcpilot.monitor.aggregate import JobFigures
from hpcpilot.parallel.books import JobBook
from hpcpilot.payload.merge import MergeInput


def settle_event_service(book: JobBook, *, status: str) -> None:
    """Decide an event-service job's final state from its ranges (and merge, if any).

    Finished if at least one range finished and nothing else failed the job (ranges that used all
    their attempts are noted in the diagnosis); failed with 1228 (ES fatal) when every range failed,
    1238 (no events) when it had none, or with the error already set on its books (a merge or
    range-source failure). ``status`` is the status those ranges were reported with
    (``eventservice.exhausted_status``): the diagnosis uses the same word ("1 of 40 ranges failed").
    """
    if book.merged is not None:
        book.outputs.append(book.merged)
    if book.error_code is None and book.finished == 0:
        if book.fatal:
            book.fail(ErrorCode.ES_FATAL, f"all {book.fatal} ranges {status}")
        else:
            book.fail(ErrorCode.ES_NO_EVENTS, "the job had no event ranges")
    book.conclude(f"{book.fatal} of {len(book.ranges)} ranges {status}" if book.fatal else "")


def range_counts(book: JobBook) -> dict[str, int]:
    """An event-service job's ranges by outcome (empty for a plain job)."""
    if not book.job.event_service:
        return {}
    return {
        "total": len(book.ranges) + book.unfetched,
        "finished": book.finished,
        "fatal": book.fatal,
        "failed_attempts": book.failed_attempts,
    }


def finished_outputs(book: JobBook) -> list[tuple[str, OutputFile]]:
    """(range id, output) of every finished range that wrote an output, in the order ranges came."""
    return [(rid, output) for _, rid, output in _finished(book)]


def _finished(book: JobBook) -> list[tuple[int, str, OutputFile]]:
    table = book.ranges
    found = []
    for index in table.indices(RangeState.FINISHED):
        output = table.output(index)
        if output is not None:
            found.append((index, table.range_id(index), OutputFile(*output)))
    return found


def merge_inputs(book: JobBook) -> list[MergeInput]:
    """The per-range outputs of a job, with their provenance, for a merger."""
    inputs = []
    for index, rid, out in _finished(book):
        rng = book.ranges.event_range(index)
        inputs.append(MergeInput(Path(out.path), rid, rng.start_event, rng.last_event, out.adler32))
    return inputs


def job_report(book: JobBook, host: str = "", figures: JobFigures | None = None) -> JobReport:
    """The report of a job's current state for the workload manager, sent from ``host``.

    ``figures`` are the job's resource figures from the monitors (`hpcpilot.monitor.aggregate`); the
    CPU time is the payloads' own unless only the samples know it (a heartbeat of a running job).
    """
    log = book.log
    figures = figures or JobFigures()
    return JobReport(
        panda_id=book.job.panda_id,
        state=book.state,
        error_code=int(book.error_code) if book.error_code is not None else None,
        error_diag=book.error_diag,
        exit_code=book.exit_code,
        n_events=book.n_events,
        ranges=range_counts(book),
        outputs=tuple(
            {"type": "output", "path": o.path, "fsize": o.fsize, "adler32": o.adler32} for o in book.outputs
        ),
        start_time=book.started,
        end_time=book.ended,
        cpu_s=book.cpu_s or figures.cpu_s,
        wall_s=(book.ended or time.time()) - book.started,
        core_count=book.job.core_count,
        log={"type": "log", "path": log.path, "fsize": log.fsize, "adler32": log.adler32} if log else None,
        host=host,
        metrics=dict(figures.metrics),
        job_metrics=figures.job_metrics,
    )
