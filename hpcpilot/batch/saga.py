"""A batch system reached through RADICAL-SAGA's job service (``slurm+ssh://login.example.org``, ...).

For submitting pilots to a machine from elsewhere (e.g. a Harvester host without the batch commands).
It needs the optional extra ``pip install 'hpcpilot[saga]'`` (``radical.saga``), imported only when the
plugin is used. It does not discover allocations: a pilot inside a job uses the job's own batch system.

Job ids are SAGA's (``[slurm://localhost]-[1234]``), which name the service and the native id.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from hpcpilot.batch.base import BatchSystem
from hpcpilot.model.allocation import Allocation, BatchJobState
from hpcpilot.model.errors import BatchSystemError, PluginError
from hpcpilot.runtime.commands import CommandRunner, run_command

__all__ = ["SagaBatchSystem", "load_saga", "saga_state"]

_STATES: dict[str, BatchJobState | None] = {
    "new": BatchJobState.SUBMITTED,
    "pending": BatchJobState.SUBMITTED,
    "running": BatchJobState.RUNNING,
    "suspended": BatchJobState.RUNNING,
    "done": BatchJobState.FINISHED,
    "canceled": BatchJobState.CANCELLED,
    "cancelled": BatchJobState.CANCELLED,
    "failed": BatchJobState.FAILED,
    "unknown": None,
}
_UNKNOWN_JOB = {"DoesNotExist", "BadParameter", "IncorrectState"}


def saga_state(state: str) -> BatchJobState | None:
    """The Harvester state of a SAGA job state (``Pending``, ``Running``, ``Done`` ...).

    New, Pending: submitted; Running, Suspended: running; Done: finished; Canceled: cancelled;
    Failed and any other: failed; Unknown: None (the job is left out of a poll).
    """
    return _STATES.get(str(state).strip().lower(), BatchJobState.FAILED)


def load_saga() -> Any:
    """Import ``radical.saga``.

    Raises
    ------
    PluginError
        It is not installed; the message names the extra to install.
    """
    try:
        return importlib.import_module("radical.saga")
    except ImportError as exc:
        raise PluginError(
            "the saga batch system needs radical.saga: pip install 'hpcpilot[saga]'",
            context={"missing": getattr(exc, "name", None) or "radical.saga"},
        ) from exc


def _saga_error(action: str, exc: Exception, url: str) -> BatchSystemError:
    return BatchSystemError(
        f"saga {action} failed: {type(exc).__name__}: {exc}",
        retryable=True,
        context={"command": f"saga {action}", "url": url},
    )


class SagaBatchSystem(BatchSystem):
    """Submit, poll and cancel through a SAGA job service.

    Parameters
    ----------
    run, env
        As for `BatchSystem` (unused: SAGA runs its own commands; it has an API, not argv builders,
        so it derives from `BatchSystem`, not `CommandBatchSystem`).
    url
        The job service (``batch.saga_url``), e.g. ``slurm+ssh://login.example.org``.
    queue, account
        Queue and project of submitted jobs (SAGA's ``slurm://`` needs the queue).
    """

    name: ClassVar[str] = "saga"
    template: ClassVar[str] = ""
    default_launcher: ClassVar[str] = "mpiexec"

    def __init__(
        self,
        run: CommandRunner = run_command,
        env: Mapping[str, str] | None = None,
        *,
        url: str = "",
        queue: str = "",
        account: str = "",
    ) -> None:
        super().__init__(run, env)
        self.url = url
        self.queue = queue
        self.account = account
        self._service: Any = None

    @classmethod
    def in_allocation(cls, env: Mapping[str, str]) -> bool:
        """Never: a SAGA service is remote; ``auto`` does not pick it."""
        return False

    def discover(self) -> Allocation:
        """Raises `BatchSystemError`: SAGA describes remote jobs, not this process's allocation."""
        raise BatchSystemError(
            "the saga batch system does not discover allocations: inside a job, use the job's own "
            "batch system (batch.system auto, slurm, pbs or lsf)",
            context={"batch_system": "saga"},
        )

    # --- the job service ----------------------------------------------------------------------

    def service(self) -> Any:
        """The job service (created on first use).

        Raises
        ------
        PluginError
            ``radical.saga`` is not installed.
        BatchSystemError
            No URL is configured, or the service cannot be reached.
        """
        if self._service is None:
            if not self.url:
                raise BatchSystemError(
                    "the saga batch system needs batch.saga_url (e.g. slurm+ssh://login.example.org)",
                    context={"field": "batch.saga_url"},
                )
            rs = load_saga()
            try:
                self._service = rs.job.Service(self.url)
            except Exception as exc:
                raise _saga_error("connect", exc, self.url) from exc
        return self._service

    def close(self) -> None:
        """Close the job service, if one was opened."""
        if self._service is not None:
            self._service.close()
            self._service = None

    def submit(self, script: Path, workdir: Path, options: Sequence[str] = ()) -> str:
        """Submit ``sh SCRIPT`` to run in ``workdir``; return SAGA's job id.

        Raises
        ------
        PluginError
            ``radical.saga`` is not installed.
        BatchSystemError
            ``options`` were given (SAGA's job description has no free-form submit options), or the
            service refused the job.
        """
        if options:
            raise BatchSystemError(
                "the saga batch system takes no submit options (batch.submit_options)",
                context={"options": " ".join(options)},
            )
        service = self.service()
        rs = load_saga()
        description = rs.job.Description()
        description.executable = "/bin/sh"
        description.arguments = [str(script)]
        description.working_directory = str(workdir)
        description.output = "hpcpilot-batch.out"
        description.error = "hpcpilot-batch.err"
        if self.queue:
            description.queue = self.queue
        if self.account:
            description.project = self.account
        try:
            job = service.create_job(description)
            job.run()
            return str(job.id)
        except Exception as exc:
            raise _saga_error("submit", exc, self.url) from exc

    def poll(self, job_ids: Sequence[str]) -> dict[str, BatchJobState]:
        """The states of ``job_ids``; jobs the service does not know (or reports Unknown) are left out.

        Raises
        ------
        BatchSystemError
            The service failed for another reason.
        """
        if not job_ids:
            return {}
        service = self.service()
        states: dict[str, BatchJobState] = {}
        for job_id in job_ids:
            try:
                raw = service.get_job(job_id).state
            except Exception as exc:
                if type(exc).__name__ in _UNKNOWN_JOB:
                    continue
                raise _saga_error("poll", exc, self.url) from exc
            state = saga_state(raw)
            if state is not None:
                states[job_id] = state
        return states

    def cancel(self, job_id: str) -> None:
        """Cancel ``job_id``.

        Raises
        ------
        BatchSystemError
            The service failed.
        """
        service = self.service()
        try:
            service.get_job(job_id).cancel()
        except Exception as exc:
            raise _saga_error("cancel", exc, self.url) from exc
