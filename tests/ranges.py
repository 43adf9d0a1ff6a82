"""Tests' view of the columnar range API, in range ids.

Rank 0 hands out intervals of a job's range table (`RangeWork`) and workers answer with columns
(`RangeResults`); most tests say what they mean in range ids and `RangeResult` objects. These helpers
translate between the two, in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.rangecut import RangeCut
from hpcpilot.model.ranges import EventRange, RangeState
from hpcpilot.model.results import OutputFile, RangeResult
from hpcpilot.parallel.books import Books
from hpcpilot.parallel.messages import Assignment, RangeResults, RangeWork, WorkerBye, WorkerUpdate
from hpcpilot.parallel.rangetable import RangeTable
from hpcpilot.parallel.worker import ranges_of_columns

#: (PandaID, index in the job's table) -> range id: what a test knows of the ranges it sent a worker.
Ids = Mapping[tuple[int, int], str]

# --- rank 0's side: the books ------------------------------------------------------------------------


def work_ids(books: Books, work: RangeWork) -> list[str]:
    """The ids of the ranges of an interval, as the books know them."""
    return books.jobs[work.panda_id].ranges.range_ids(range(work.start, work.stop))


def handed(books: Books, assignment: Assignment | None) -> list[tuple[int, str, int]]:
    """(PandaID, range id, attempt) of each range an assignment hands out."""
    assert assignment is not None, "nothing was assigned"
    return [
        (work.panda_id, rid, work.attempt_of(k))
        for work in assignment.ranges
        for k, rid in enumerate(work_ids(books, work))
    ]


def handed_ids(books: Books, assignment: Assignment | None) -> list[str]:
    """The ids of the ranges an assignment hands out, in order."""
    return [rid for _, rid, _ in handed(books, assignment)]


def queued(books: Books) -> list[tuple[int, str, int]]:
    """(PandaID, range id, attempt it will be handed out with) of each range in the queue, in order."""
    out = []
    for panda_id, start, stop in books.range_queue:
        table = books.jobs[panda_id].ranges
        out += [(panda_id, table.range_id(i), int(table.attempts[i]) + 1) for i in range(start, stop)]
    return out


def queued_ids(books: Books) -> list[str]:
    """The ids of the ranges in the queue, in order."""
    return [rid for _, rid, _ in queued(books)]


def state_of(books: Books, panda_id: int, range_id: str) -> RangeState:
    """The state of one range, by id."""
    table = books.jobs[panda_id].ranges
    index = table.index_of(range_id)
    assert index is not None, f"job {panda_id} has no range {range_id}"
    return table.state_of(index)


def attempts_of(books: Books, panda_id: int, range_id: str) -> int:
    """Attempts of one range handed out so far (the running one included)."""
    table = books.jobs[panda_id].ranges
    index = table.index_of(range_id)
    assert index is not None, f"job {panda_id} has no range {range_id}"
    return int(table.attempts[index])


def all_ids(table: RangeTable) -> list[str]:
    """The ids of every range of a job's table, in order."""
    return table.range_ids(range(len(table)))


def taken_back(back: Iterable[tuple[int, list[str]]]) -> list[str]:
    """The ids `Books.return_ranges` / `Books.reclaim` took back, all jobs in order."""
    return [rid for _, ids in back for rid in ids]


def batch(
    table: RangeTable, panda_id: int, results: Sequence[RangeResult], out_prefix: str = ""
) -> RangeResults:
    """The columns a worker would send for ``results`` (ranges of ``table``, found by id).

    An output not at ``out_prefix + range id`` travels as an odd path, as the worker sends it.
    """
    index: list[int] = []
    odd: list[tuple[int, str]] = []
    errors: list[tuple[int, int, str]] = []
    for pos, r in enumerate(results):
        i = table.index_of(r.range_id)
        assert i is not None, f"job {panda_id} has no range {r.range_id}"
        index.append(i)
        if r.output is not None and r.output.path != out_prefix + r.range_id:
            odd.append((pos, r.output.path))
        if r.state is not RangeState.FINISHED:
            errors.append((pos, int(r.error_code) if r.error_code is not None else 0, r.error_diag))
    return RangeResults(
        panda_id,
        tuple(index),
        bytes(r.state is RangeState.FINISHED for r in results),
        tuple(r.n_events for r in results),
        tuple(r.output.fsize if r.output else -1 for r in results),
        tuple(r.output.adler32 if r.output else "" for r in results),
        tuple(r.wall_s for r in results),
        tuple(r.cpu_s for r in results),
        out_prefix,
        tuple(odd),
        tuple(errors),
    )


# --- a worker's side: what it is sent, what it sends --------------------------------------------------


def fed(panda_id: int, ranges: Sequence[EventRange], start: int = 0, attempt: int = 1) -> RangeWork:
    """Fed ranges handed to a worker, with indices from ``start``."""
    return RangeWork.of_ranges(panda_id, ranges, start, attempt)


def ids_of(works: Iterable[RangeWork]) -> dict[tuple[int, int], str]:
    """What a test sent a worker, as `Ids` (from each interval's definitions)."""
    ids: dict[tuple[int, int], str] = {}
    for work in works:
        if isinstance(work.defs, RangeCut):
            rids = work.defs.range_ids(work.start, work.stop)
        elif isinstance(work.defs, dict):
            rids = [r.range_id for r in ranges_of_columns(work.defs)]
        else:
            raise AssertionError(f"no definitions in {work}")
        ids.update({(work.panda_id, work.start + k): rid for k, rid in enumerate(rids)})
    return ids


def batches_in(messages: Iterable[object]) -> list[RangeResults]:
    """The range results of worker messages (updates and byes), in order."""
    updates = [m.update if isinstance(m, WorkerBye) else m for m in messages]
    return [b for u in updates if isinstance(u, WorkerUpdate) for b in u.ranges]


def results_of(batches: Iterable[RangeResults], ids: Ids) -> list[RangeResult]:
    """Columnar results as `RangeResult` objects, the ids from ``ids``, in order."""
    out: list[RangeResult] = []
    for b in batches:
        odd = dict(b.odd_paths)
        errors = {pos: (code, diag) for pos, code, diag in b.errors}
        for pos, index in enumerate(b.index):
            rid = ids[(b.panda_id, index)]
            output = None
            if b.fsize[pos] >= 0:
                output = OutputFile(odd.get(pos, b.out_prefix + rid), b.fsize[pos], b.adler32[pos])
            code, diag = errors.get(pos, (0, ""))
            out.append(
                RangeResult(
                    b.panda_id,
                    rid,
                    RangeState.FINISHED if b.finished[pos] else RangeState.FAILED,
                    output,
                    b.nevents[pos],
                    ErrorCode(code) if code else None,
                    diag,
                    b.wall_s[pos],
                    b.cpu_s[pos],
                )
            )
    return out


def returned_ids(returned: Iterable[RangeWork], ids: Ids) -> list[str]:
    """The ids of the ranges a worker gave back (intervals without definitions)."""
    return [ids[(w.panda_id, i)] for w in returned for i in range(w.start, w.stop)]
