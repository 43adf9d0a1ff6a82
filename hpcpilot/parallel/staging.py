"""Rank 0's staging of whole jobs, in the background.

Inputs come in before a job's work is handed out; outputs and the log go out after its final state is
decided. Transfers run in a bounded pool (`hpcpilot.data.async_stager.AsyncStager`, ``data.async_workers``
threads), so a slow copy never holds up dispatch: the coordinator submits and later collects what has
finished with `JobStaging.poll` from its event loop.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from hpcpilot.config.schema import DataSettings
from hpcpilot.data.async_stager import AsyncStager
from hpcpilot.data.staging import StageInClient, StageOutClient, StagingClient
from hpcpilot.data.transfer import Transfer, TransferResult
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Job
from hpcpilot.model.layout import WorkLayout

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Staged:
    """A job whose stage-in or stage-out has ended.

    Attributes
    ----------
    panda_id
        The job.
    inbound
        True for stage-in, False for stage-out.
    results
        One per file.
    """

    panda_id: int
    inbound: bool
    results: tuple[TransferResult, ...]

    def error(self) -> tuple[ErrorCode, str] | None:
        """The job's error code and diagnosis when a file failed (naming every failed file)."""
        failed = [r for r in self.results if not r.ok]
        if not failed:
            return None
        code = failed[0].error_code or ErrorCode.GENERAL_ERROR
        diag = "; ".join(r.error_diag or f"{r.transfer.lfn} failed" for r in failed)
        return code, diag


class JobStaging:
    """Stage-in and stage-out of whole jobs on rank 0.

    Parameters
    ----------
    settings
        The ``data`` settings.
    layout
        The work directory.
    """

    def __init__(self, settings: DataSettings, layout: WorkLayout) -> None:
        self.settings = settings
        self.layout = layout
        self.stage_in_client = StageInClient.from_settings(settings)
        self.output_client = StageOutClient.from_settings(settings)
        self.log_client = StageOutClient.from_settings(settings, log=True)
        self._stager: AsyncStager | None = None
        self._waiting: dict[tuple[int, bool], int] = {}
        self._results: dict[tuple[int, bool], list[TransferResult]] = defaultdict(list)

    @property
    def busy(self) -> bool:
        """Whether any job's files are still moving."""
        return bool(self._waiting)

    def stage_in(self, job: Job) -> bool:
        """Start staging in the job's inputs that are not in its directory yet.

        Returns
        -------
        bool
            Whether staging started (the job must wait for `poll`); False when every input is in place
            (Harvester linked them in) or the job has none.

        Raises
        ------
        StagingError
            If an input is nowhere and no ``data.stagein_source`` is set (1103, naming the file).
        """
        transfers = self.stage_in_client.plan(job, self.layout.job_dir(job.panda_id), self.layout.root)
        if not transfers:
            return False
        log.info("job %d: staging in %d input file(s)", job.panda_id, len(transfers))
        self._submit((job.panda_id, True), [(self.stage_in_client, transfers)])
        return True

    def stage_out(self, job: Job, outputs: list[Path], log_file: Path | None) -> bool:
        """Start staging out a job's outputs and its log tarball to the site's destination.

        Parameters
        ----------
        job
            The job (its specs name the scope, dataset and endpoint of each file).
        outputs
            Output files to stage out (matched to the job's specs by name).
        log_file
            The log tarball, or None.

        Returns
        -------
        bool
            Whether staging started; False when no destination is configured or nothing is to move.
        """
        batches: list[tuple[StagingClient, list[Transfer]]] = []
        if self.output_client.enabled and outputs:
            files = self.output_client.described(job, outputs)
            batches.append((self.output_client, self.output_client.plan(job, files)))
        if self.log_client.enabled and log_file is not None and job.log_file is not None:
            files = self.log_client.described(job, [log_file], log=True)
            batches.append((self.log_client, self.log_client.plan(job, files)))
        batches = [(client, transfers) for client, transfers in batches if transfers]
        if not batches:
            return False
        n = sum(len(t) for _, t in batches)
        log.info("job %d: staging out %d file(s)", job.panda_id, n)
        self._submit((job.panda_id, False), batches)
        return True

    def poll(self) -> list[Staged]:
        """Jobs whose staging has ended since the last call (never blocks)."""
        if self._stager is None:
            return []
        done = []
        for key, results in self._stager.poll():
            assert isinstance(key, tuple)
            job_key = (key[0], key[1])
            self._results[job_key].extend(results)
            self._waiting[job_key] -= 1
            if self._waiting[job_key] == 0:
                del self._waiting[job_key]
                done.append(Staged(job_key[0], job_key[1], tuple(self._results.pop(job_key))))
        return done

    def close(self, wait: bool) -> None:
        """Stop the pool; with ``wait`` False, transfers not started are dropped."""
        if self._stager is not None:
            self._stager.close(wait=wait)
        self._waiting.clear()

    def _submit(self, job_key: tuple[int, bool], batches: list[tuple[StagingClient, list[Transfer]]]) -> None:
        if self._stager is None:
            self._stager = AsyncStager(self.settings.async_workers)
        self._waiting[job_key] = len(batches)
        for i, (client, transfers) in enumerate(batches):
            self._stager.submit((*job_key, i), client, transfers)
