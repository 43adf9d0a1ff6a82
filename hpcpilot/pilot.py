"""Composing a run: detect the world, load and broadcast settings, build each rank's role, run it.

Rank 0 alone reads configuration and talks to the workload manager; it broadcasts the settings, so no
other rank reads a config file. Every rank runs under `hpcpilot.parallel.run.guarded`: an
unexpected exception anywhere is logged with rank and host and aborts the whole MPI job.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcpilot.config.schema import Settings
from hpcpilot.model.allocation import Allocation, parse_duration
from hpcpilot.model.errors import ErrorCode, ExitCode, HpcPilotError
from hpcpilot.model.layout import WorkLayout
from hpcpilot.parallel import run as par
from hpcpilot.parallel.transport import LocalLink, MpiCoordinatorTransport, MpiWorkerTransport
from hpcpilot.plugins import entry_point_table, use_entry_point_table
from hpcpilot.runtime.logs import setup_logging
from hpcpilot.runtime.signals import SignalFlag
from hpcpilot.runtime.terminal import StatusPrinter

if TYPE_CHECKING:  # rank 0's modules stay out of the workers' import path
    from hpcpilot.comm.base import Communicator
    from hpcpilot.parallel.coordinator import Coordinator
    from hpcpilot.parallel.resume import ResumeState
    from hpcpilot.runtime.journal import Journal

log = logging.getLogger(__name__)


def run_pilot(load: Callable[[], Settings], resume: bool = False) -> int:
    """Run the pilot on this rank.

    Parameters
    ----------
    load
        Loads the settings; called on rank 0 only. May raise `HpcPilotError`.
    resume
        Take up the work a killed run left in the work directory (its journal), see
        `hpcpilot.parallel.resume`; without it an earlier journal is moved aside.

    Returns
    -------
    int
        The exit code (see `hpcpilot.cli`).
    """
    world = par.detect_world()
    settings, error, plugin_table = None, None, None
    if world.rank == 0:
        try:
            settings = load()
            layout = WorkLayout(Path(settings.run.workdir).resolve())
            layout.log_dir.mkdir(parents=True, exist_ok=True)
        except HpcPilotError as exc:
            error = str(exc)
        except OSError as exc:
            error = f"cannot prepare the work directory: {exc}"
        if world.size > 1:
            try:
                plugin_table = entry_point_table()
            except Exception as exc:  # broken metadata: the workers read it themselves, as rank 0 will
                log.warning("cannot read the plugins' entry points for the workers: %s", exc)
    # the workers load their plugins from rank 0's entry-point table: no metadata scan on each rank
    settings, error, plugin_table = world.broadcast((settings, error, plugin_table))
    if world.rank != 0:
        use_entry_point_table(plugin_table)
    if error is not None or settings is None:
        if world.rank == 0:
            print(f"hpcpilot: configuration error: {error}", file=sys.stderr)
        return ExitCode.CONFIG
    return par.guarded(world, lambda: _run_role(world, settings, resume))


def _status_printer(settings: Settings) -> StatusPrinter:
    mode = settings.run.status_mode
    redraw = mode == "redraw" or (mode == "auto" and sys.stderr.isatty())
    return StatusPrinter(sys.stderr, redraw)


def _run_role(world: par.World, settings: Settings, resume: bool = False) -> int:
    layout = WorkLayout(Path(settings.run.workdir).resolve())
    printer = _status_printer(settings) if world.rank == 0 else None
    buffer = setup_logging(
        rank=world.rank,
        host=world.host,
        level=settings.run.log_level,
        log_file=layout.rank_log(world.rank),
        printer=printer,
    )
    signals = SignalFlag()
    signals.install()
    allocation: Allocation = world.broadcast(_allocation(settings) if world.rank == 0 else None)
    resources = par.node_resources(world, settings, allocation.gpus_per_node)  # collective
    if resources is not None:
        par.log_resources(world, resources)
    if world.rank != 0:
        worker = par.make_worker(
            world,
            MpiWorkerTransport(world.comm),
            settings,
            layout,
            buffer.drain if buffer else tuple,
            resources=resources,
        )
        par.run_worker(worker, settings, signals)
        world.wait_for_all()
        return ExitCode.OK
    assert printer is not None
    log.info("hpcpilot on %d rank(s), work directory %s", world.size, layout.root)
    end = allocation.end_time
    from hpcpilot.parallel.coordinator import Coordinator
    from hpcpilot.runtime.records import EndRecord, RunRecord

    communicator = _communicator(settings, layout)
    state = _resume_state(layout) if resume else None
    journal = _journal(layout, resume, layout.root / settings.monitor.file)
    journal.write(RunRecord(world.host, os.getpid(), world.size, resume))
    if world.size == 1:
        link = LocalLink()
        coordinator = Coordinator(
            link.coordinator, settings, layout, communicator, journal, printer.show, end
        )
        worker = par.make_worker(world, link.worker, settings, layout, tuple, resources=resources)
        if state is not None:
            coordinator.restore(state)
        coordinator.disk.reserve.make()
        par.run_single(coordinator, worker, settings, signals)
    else:
        tolerant = par.fault_tolerant(world, settings.parallel.fault_tolerance, os.environ)
        coordinator = Coordinator(
            MpiCoordinatorTransport(world.comm, tolerant),
            settings,
            layout,
            communicator,
            journal,
            printer.show,
            end,
        )
        if state is not None:
            coordinator.restore(state)
        coordinator.disk.reserve.make()
        par.run_coordinator(coordinator, settings, signals)
    printer.finish()
    _last_write(coordinator, "the communicator's last files", communicator.close)
    coordinator.reports.journal_delivered()
    journal.write(EndRecord(coordinator.drain_code.name if coordinator.drain_code else None))
    if not _last_write(coordinator, "the journal", journal.flush):
        log.error("%d journal record(s) are lost to the full disk", journal.discard())
    journal.close()
    code = _conclude(coordinator, layout, state, ok_on_failed=communicator.exits_ok_on_failed_jobs)
    world.wait_for_all()
    return code


def _allocation(settings: Settings) -> Allocation:
    """Rank 0: the allocation from the batch system, its end moved by ``batch.walltime``.

    A batch system that cannot be asked (a failing ``squeue``) is logged, and the run goes on
    without a known end: the batch system's signals still end it cleanly.
    """
    from hpcpilot.batch.select import discover_allocation

    started = time.time()
    try:
        allocation = discover_allocation(settings.batch, os.environ)
    except HpcPilotError as exc:
        log.warning("cannot discover the allocation (%s): running without a known end time", exc)
        allocation = Allocation("unknown")
    if settings.batch.walltime:
        allocation = allocation.with_end(started + parse_duration(settings.batch.walltime))
    end = allocation.end_time
    log.info(
        "%s allocation %s: %d node(s), %s",
        allocation.batch_system,
        allocation.job_id or "-",
        len(allocation.nodes),
        f"ends in {end - started:.0f} s" if end is not None else "no end time known",
    )
    return allocation


def _communicator(settings: Settings, layout: WorkLayout) -> Communicator:
    from hpcpilot.comm.base import Communicator
    from hpcpilot.plugins import load_plugin

    cls = load_plugin("communicators", settings.run.communicator, Communicator)
    return cls(settings, layout)


def _journal(layout: WorkLayout, resume: bool, series: Path) -> Journal:
    """Rank 0's journal: appended to when resuming; else an earlier one is moved aside first.

    The earlier run's time series (``series``, ``monitor.h5``) is moved aside with it, so a new run's
    figures never mix with an old one's.
    """
    from hpcpilot.runtime.journal import Journal

    path = layout.journal
    if not resume and path.exists() and path.stat().st_size:
        stamp = f"{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
        aside = path.with_name(f"journal.{stamp}.jsonl")
        path.rename(aside)
        log.warning("an earlier run's journal is kept as %s (use 'run --resume' to continue it)", aside.name)
        if series.exists():
            kept = series.with_name(f"{series.stem}.{stamp}{series.suffix}")
            series.rename(kept)
            log.warning("an earlier run's time series is kept as %s", kept.name)
    return Journal(path)


def _resume_state(layout: WorkLayout) -> ResumeState:
    """What the earlier runs' journal leaves to do."""
    from hpcpilot.parallel.resume import resume_state
    from hpcpilot.runtime.records import read_records

    skipped: list[str] = []
    state = resume_state(read_records(layout.journal, skipped))
    for problem in skipped:
        log.error("--resume: skipped a journal record: %s", problem)
    for problem in state.problems:
        log.error("--resume: %s (the job is not taken up from the journal)", problem)
    if state.runs == 0:
        log.warning("--resume: no journal in %s: starting afresh", layout.root)
    else:
        log.warning(
            "--resume: %d job(s) done before are skipped, %d open job(s) taken up%s",
            len(state.done),
            len(state.open),
            "" if not state.clean_end else " (the last run had ended cleanly)",
        )
    return state


def _last_write(coordinator: Coordinator, what: str, write: Callable[[], object]) -> bool:
    """One of the run's last writes; on a full disk the space held back is given up and it is tried again.

    Returns whether it was written; if not, the error is logged and the run ends without it.
    """
    from hpcpilot.runtime.diskspace import is_disk_full

    for last in (False, True):
        try:
            write()
            return True
        except (OSError, HpcPilotError) as exc:
            if not is_disk_full(exc):
                raise
            if last or not coordinator.disk.release_reserve():
                coordinator.disk.enter(time.monotonic(), f"{what}: {exc}")
                log.error("disk full: cannot write %s: %s", what, exc)
                return False
    return False


def _conclude(
    coordinator: Coordinator,
    layout: WorkLayout,
    resumed: ResumeState | None = None,
    *,
    ok_on_failed: bool = False,
) -> int:
    """Write and print the summary (a resumed run's keeps the jobs of the runs before); the exit code.

    ``ok_on_failed``: failed jobs leave the exit code 0 (`Communicator.exits_ok_on_failed_jobs`).
    """
    from hpcpilot.parallel.status import format_summary
    from hpcpilot.runtime.atomic import write_json_atomic

    summary = coordinator.summary()
    if resumed is not None:
        summary = _with_earlier_summary(layout, summary, resumed)
    path = layout.summary
    written = _last_write(coordinator, path.name, lambda: write_json_atomic(path, summary))
    coordinator.disk.reserve.release()
    sys.stdout.write(format_summary(summary))
    sys.stdout.flush()
    if coordinator.fatal_error is not None:
        return ExitCode.CONFIG
    if coordinator.drain_code is ErrorCode.NO_LOCAL_SPACE or coordinator.disk.full or not written:
        return ExitCode.DISK_FULL
    cut = int(ErrorCode.REACHED_MAX_TIME)
    failed = any(job["state"] != "finished" and job["error_code"] != cut for job in summary["jobs"])
    if failed and not ok_on_failed:
        return ExitCode.JOBS_FAILED
    return ExitCode.OK  # the end of the allocation cutting work is a normal outcome


def _with_earlier_summary(
    layout: WorkLayout, summary: dict[str, Any], resumed: ResumeState
) -> dict[str, Any]:
    """``summary`` merged with the one the runs before wrote and the jobs their journal has as done."""
    import json

    from hpcpilot.parallel.summary import merge_summaries

    earlier: Any = {}
    try:
        earlier = json.loads(layout.summary.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("--resume: the earlier %s cannot be read (%s): not merged", layout.summary.name, exc)
    return merge_summaries(earlier if isinstance(earlier, dict) else {}, summary, resumed.finals)
