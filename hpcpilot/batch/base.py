"""The batch-system plugin family: what the allocation is, and submitting, polling and cancelling jobs.

Two bases, shaped as PSI/J shapes its executors:

* `BatchSystem`: what every plugin does: discover the allocation, submit, poll and cancel. A plugin
  that reaches its batch system through an API (``saga``) or has none (``local``) derives from it.
* `CommandBatchSystem`: a batch system driven by its commands (``slurm``, ``pbs``, ``lsf``). It is a
  set of pure builders (argv lists) and parsers (command output -> objects); the commands are run
  through an injected `CommandRunner`, so every parser is tested on recorded real output.
"""

from __future__ import annotations

import abc
import os
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from hpcpilot.model.allocation import Allocation, BatchJobState
from hpcpilot.model.errors import BatchSystemError
from hpcpilot.runtime.commands import CommandResult, CommandRunner, run_command

__all__ = ["BatchSystem", "CommandBatchSystem"]


class BatchSystem(abc.ABC):
    """One batch system (entry-point group ``hpcpilot.batch_systems``).

    Parameters
    ----------
    run
        Runs a command and captures its output (`hpcpilot.runtime.commands.run_command`), for the
        queries of `discover` and the commands of a `CommandBatchSystem`.
    env
        The environment of the batch job (where allocation facts are read from).
    clock
        The current time (epoch seconds), for a time left that the batch system counts from now.

    Attributes
    ----------
    name
        The plugin's name.
    template
        The batch-script template in ``launchers/`` used to submit to it (empty: none).
    default_launcher
        The ``hpcpilot.launchers`` plugin that starts one rank per node in its allocations.
    """

    name: ClassVar[str] = ""
    template: ClassVar[str] = ""
    default_launcher: ClassVar[str] = "mpiexec"

    def __init__(
        self,
        run: CommandRunner = run_command,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.run = run
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.clock = clock

    # --- the allocation -----------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def in_allocation(cls, env: Mapping[str, str]) -> bool:
        """Whether ``env`` is the environment of a job of this batch system."""

    @abc.abstractmethod
    def discover(self) -> Allocation:
        """The allocation this process runs in (environment, node files and queries).

        Raises
        ------
        BatchSystemError
            The environment is not that of a job of this system, or a query failed.
        """

    # --- jobs ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def submit(self, script: Path, workdir: Path, options: Sequence[str] = ()) -> str:
        """Submit ``script`` to run in ``workdir`` (with extra submit ``options``); return the job id.

        Raises
        ------
        BatchSystemError
            The batch system refused the job, or cannot submit at all.
        """

    @abc.abstractmethod
    def poll(self, job_ids: Sequence[str]) -> dict[str, BatchJobState]:
        """The states of ``job_ids`` the batch system still knows (jobs it does not know are left out).

        Raises
        ------
        BatchSystemError
            The query failed.
        """

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Cancel ``job_id``.

        Raises
        ------
        BatchSystemError
            The batch system refused, or cannot cancel at all.
        """

    def describe_submit(self, script: Path, workdir: Path, options: Sequence[str] = ()) -> str:
        """How `submit` would submit ``script``, for ``hpcpilot submit --dry-run``."""
        return f"the {self.name} job service"


class CommandBatchSystem(BatchSystem):
    """A batch system driven by its commands: argv builders and output parsers, run through ``run``.

    Attributes
    ----------
    submit_tool
        The submit command's name for error messages, where ``submit_argv`` wraps it in ``sh -c``.
    """

    submit_tool: ClassVar[str] = ""

    # --- the builders and parsers -------------------------------------------------------------

    @abc.abstractmethod
    def submit_argv(self, script: Path, workdir: Path, options: Sequence[str] = ()) -> list[str]:
        """The command that submits ``script`` to run in ``workdir``, with extra submit ``options``."""

    @abc.abstractmethod
    def parse_submit(self, stdout: str) -> str:
        """The job id in the output of the submit command.

        Raises
        ------
        BatchSystemError
            No job id in it.
        """

    @abc.abstractmethod
    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """The command that reports the state of ``job_ids``."""

    @abc.abstractmethod
    def parse_status(self, stdout: str) -> dict[str, BatchJobState]:
        """Job id -> state, from the output of the status command (jobs it lists)."""

    @abc.abstractmethod
    def cancel_argv(self, job_id: str) -> list[str]:
        """The command that cancels ``job_id``."""

    # --- the I/O, through the injected runner -------------------------------------------------

    @staticmethod
    def _failure(argv: Sequence[str], result: CommandResult, tool: str = "") -> BatchSystemError:
        """The error of a command that failed, named ``tool`` (default: ``argv[0]``)."""
        return BatchSystemError(
            f"{tool or argv[0]} failed: {result.stderr_tail()}",
            retryable=True,
            context={"command": " ".join(argv), "exit_code": result.returncode},
        )

    def _call(self, argv: list[str], tool: str = "") -> CommandResult:
        result = self.run(argv)
        if not result.ok:
            raise self._failure(argv, result, tool)
        return result

    def submit(self, script: Path, workdir: Path, options: Sequence[str] = ()) -> str:
        """Submit ``script`` to run in ``workdir`` (with extra submit ``options``); return the job id."""
        argv = self.submit_argv(script, workdir, options)
        return self.parse_submit(self._call(argv, self.submit_tool).stdout)

    def poll(self, job_ids: Sequence[str]) -> dict[str, BatchJobState]:
        """The states of ``job_ids`` the batch system still knows."""
        if not job_ids:
            return {}
        return self.parse_status(self._call(self.status_argv(job_ids)).stdout)

    def cancel(self, job_id: str) -> None:
        """Cancel ``job_id``."""
        self._call(self.cancel_argv(job_id))

    def describe_submit(self, script: Path, workdir: Path, options: Sequence[str] = ()) -> str:
        """The submit command, as a shell line."""
        return shlex.join(self.submit_argv(script, workdir, options))
