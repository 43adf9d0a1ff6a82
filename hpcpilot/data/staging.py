"""Stage-in and stage-out clients: move a job's files with a chain of copytools, verified.

A `StagingClient` moves files one after the other. For each file it tries the copytools of its chain in
order, skipping those that do not handle the file's URL schemes; each tool gets ``1 + data.retries``
attempts when its error is retryable (a timeout, a network error, an unknown error), with a pause of
``data.backoff_s`` doubling up to ``data.backoff_max_s`` between them; then the next tool. A file's time
limit is ``data.timeout_s + data.timeout_per_gb_s * size / 1e9``.

Verification:

* stage-out: the client first computes the local file's size and adler32 (a missing file is 1165) and
  hands them to the tool in the `Transfer`; a tool writing to storage verifies end to end
  (``xrdcp --cksum``, ``gfal-copy -K``, Rucio's upload), and the result carries that checksum;
* a copy to a local destination (every stage-in, a stage-out to a shared filesystem) is checked by
  the client: the size against the expected size (a mismatch is the direction's failed code, 1099/1137,
  retryable: a truncated copy is usually transient) and the checksum, streaming, against the expected
  one (adler32 or md5 as the job gives it; a mismatch is 1171/1172). A bad copy is removed, unless it is
  the only copy left (``mv`` consumed the source).

`StagingClient.transfer` never raises for a file's failure: a failed file is a `TransferResult` with
``ok`` False, the PanDA error code and a diagnostic naming the LFN, the tools and what they said.

`location` and `AsyncStager` (the background stager of rank 0) are re-exported here from
`hpcpilot.data.locations` and `hpcpilot.data.async_stager`.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from hpcpilot.config.schema import DataSettings, split_list
from hpcpilot.data.async_stager import AsyncStager
from hpcpilot.data.checksums import checksum_of_file
from hpcpilot.data.copytools.base import Copytool, local_path, scheme_of
from hpcpilot.data.locations import location
from hpcpilot.data.transfer import Direction, Transfer, TransferResult
from hpcpilot.model.errors import ErrorCode, StagingError
from hpcpilot.model.job import Checksum, ChecksumAlgorithm, FileSpec, Job, check_file_name
from hpcpilot.plugins import load_plugin
from hpcpilot.runtime.commands import CommandResult, run_command

__all__ = [
    "AsyncStager",
    "StageInClient",
    "StageOutClient",
    "StagingClient",
    "location",
]

log = logging.getLogger(__name__)

_WHAT = {Direction.IN: "stage-in", Direction.OUT: "stage-out"}


@dataclasses.dataclass
class _Failure:
    tool: str
    attempts: int
    error: StagingError


class StagingClient:
    """Moves files through a chain of copytools, with retries, backoff, timeouts and verification.

    Parameters
    ----------
    settings
        The ``data`` settings (retries, backoff, timeouts).
    direction
        Stage-in or stage-out: decides the error codes.
    tools
        Copytool plugin names (``hpcpilot.copytools`` entry points, or ``module:Class``), tried in order.
    run
        The command runner the tools use (injected for tests).
    sleep, clock
        Pause and monotonic clock (injected for tests).
    env
        The environment of the tools' commands (default: this process's).
    copytools
        Ready tool instances by name, used instead of loading those names (for tests and embedding).

    Raises
    ------
    PluginError
        If a tool of the chain is not installed or does not load.
    """

    #: The direction a subclass is for (None: either).
    fixed_direction: ClassVar[Direction | None] = None

    def __init__(
        self,
        settings: DataSettings,
        direction: Direction,
        tools: Sequence[str],
        *,
        run: Callable[..., CommandResult] = run_command,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        env: Mapping[str, str] | None = None,
        copytools: Mapping[str, Copytool] | None = None,
    ) -> None:
        if self.fixed_direction is not None and direction is not self.fixed_direction:
            raise ValueError(f"{type(self).__name__} is for direction {self.fixed_direction.value}")
        self.settings = settings
        self.direction = direction
        self.sleep = sleep
        self.clock = clock
        given = dict(copytools or {})
        self.tools: dict[str, Copytool] = {}
        for name in tools:
            if name not in self.tools:
                self.tools[name] = given.get(name) or load_plugin("copytools", name, Copytool)(
                    run=run, env=env
                )

    @property
    def what(self) -> str:
        """``stage-in`` or ``stage-out``, for messages."""
        return _WHAT[self.direction]

    def timeout_for(self, transfer: Transfer) -> float:
        """The time limit of one attempt at ``transfer``: ``timeout_s`` plus ``timeout_per_gb_s`` per GB."""
        size_gb = (transfer.fsize or 0) / 1e9
        return self.settings.timeout_s + self.settings.timeout_per_gb_s * size_gb

    def transfer(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        """Move ``transfers`` one after the other; one result each, in order. Never raises for a file."""
        return [self._one(t) for t in transfers]

    # -- one file --------------------------------------------------------------------------------

    def _location(self, template: str, spec: FileSpec, panda_id: int) -> str:
        """`location`, its error carrying this direction's failure code (1099 / 1137)."""
        try:
            return location(template, spec, panda_id)
        except StagingError as exc:
            raise StagingError(exc.message, code=self.direction.failed_code, context=exc.context) from None

    def _one(self, transfer: Transfer) -> TransferResult:
        start = self.clock()
        try:
            return self._attempts(transfer, start)
        except Exception as exc:  # a bug must not lose the file's result
            log.exception("%s of %s: unexpected error", self.what, transfer.lfn)
            return TransferResult(
                transfer,
                ok=False,
                seconds=self.clock() - start,
                error_code=self.direction.failed_code,
                error_diag=f"{self.what} of {transfer.lfn} failed: unexpected error: {exc!r}",
            )

    def _attempts(self, transfer: Transfer, start: float) -> TransferResult:
        try:
            transfer = self._prepare(transfer)
        except StagingError as exc:
            return self._failed(transfer, start, 0, [_Failure("", 0, exc)])
        candidates = [(name, tool) for name, tool in self.tools.items() if tool.handles(transfer)]
        if not candidates:
            error = StagingError(
                f"no copytool of the chain [{', '.join(self.tools)}] handles "
                f"{scheme_of(transfer.source)} -> {scheme_of(transfer.destination)}",
                code=self.direction.failed_code,
            )
            return self._failed(transfer, start, 0, [_Failure("", 0, error)])
        timeout_s = self.timeout_for(transfer)
        failures: list[_Failure] = []
        attempts = 0
        for name, tool in candidates:
            tries = 0
            pause = self.settings.backoff_s
            while True:
                attempts += 1
                tries += 1
                try:
                    confirmed = tool.copy(transfer, timeout_s)
                    checksum, size = self._verify(transfer, confirmed, name)
                except StagingError as exc:
                    error = exc
                except Exception as exc:  # a tool's bug: this tool has failed, try the next
                    log.exception("%s of %s: %s raised", self.what, transfer.lfn, name)
                    error = StagingError(f"{name} raised {exc!r}", code=self.direction.failed_code)
                else:
                    return TransferResult(
                        transfer,
                        ok=True,
                        tool=name,
                        attempts=attempts,
                        seconds=self.clock() - start,
                        fsize=size,
                        checksum=checksum,
                    )
                self._discard_partial(transfer)
                log.warning(
                    "%s of %s: %s attempt %d failed (%d): %s",
                    self.what,
                    transfer.lfn,
                    name,
                    tries,
                    int(error.code),
                    error.message,
                )
                if not error.retryable or tries > self.settings.retries:
                    break
                self.sleep(min(pause, self.settings.backoff_max_s))
                pause = min(pause * 2, self.settings.backoff_max_s)
            failures.append(_Failure(name, tries, error))
        return self._failed(transfer, start, attempts, failures)

    def _prepare(self, transfer: Transfer) -> Transfer:
        """Before any attempt: a stage-out's local size and adler32; a local destination's directory."""
        if scheme_of(transfer.destination) == "file":
            dest = Path(local_path(transfer.destination))
            if self.direction is Direction.IN and dest.is_symlink() and not dest.exists():
                dest.unlink()  # a dangling link: a tool must not write through it to its old target
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StagingError(
                    f"cannot create the directory of {transfer.destination}: {exc.strerror}",
                    code=ErrorCode.NO_LOCAL_SPACE
                    if exc.errno == errno.ENOSPC
                    else self.direction.failed_code,
                ) from None
        if self.direction is not Direction.OUT or scheme_of(transfer.source) != "file":
            return transfer
        path = Path(local_path(transfer.source))
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise IsADirectoryError(f"{path} is not a regular file")
            computed = checksum_of_file(path, ChecksumAlgorithm.ADLER32)
            declared = transfer.checksum
            if declared is not None and declared.algorithm is ChecksumAlgorithm.MD5:
                computed_md5 = checksum_of_file(path, ChecksumAlgorithm.MD5)
                if computed_md5 != declared:
                    raise _checksum_error(self.direction, path, computed_md5, declared, "declared")
        except FileNotFoundError:
            raise StagingError(f"output {path} does not exist", code=ErrorCode.MISSING_OUTPUT_FILE) from None
        except OSError as exc:
            raise StagingError(f"cannot read {path}: {exc}", code=self.direction.failed_code) from None
        if declared is not None and declared.algorithm is ChecksumAlgorithm.ADLER32 and declared != computed:
            raise _checksum_error(self.direction, path, computed, declared, "declared")
        if transfer.fsize is not None and transfer.fsize != size:
            raise StagingError(
                f"size mismatch: {path} has {size} bytes, {transfer.fsize} declared",
                code=self.direction.failed_code,
            )
        return dataclasses.replace(transfer, fsize=size, checksum=computed)

    def _verify(
        self, transfer: Transfer, confirmed: Checksum | None, tool: str
    ) -> tuple[Checksum | None, int | None]:
        """After a copy: the checksum and size of what arrived, or StagingError (bad copy removed)."""
        expected = transfer.checksum
        if scheme_of(transfer.destination) != "file":
            if (
                confirmed is not None
                and expected is not None
                and confirmed.algorithm is expected.algorithm
                and confirmed != expected
            ):
                raise StagingError(
                    f"checksum mismatch: {tool} reports {confirmed} at the destination, expected {expected}",
                    code=self.direction.checksum_code,
                )
            return expected or confirmed, transfer.fsize
        path = Path(local_path(transfer.destination))
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise StagingError(
                f"{tool} reported success but {path} does not exist",
                code=self.direction.failed_code,
                retryable=True,
            ) from None
        if transfer.fsize is not None and size != transfer.fsize:
            self._remove_bad_copy(transfer, path)
            raise StagingError(
                f"size mismatch: {path} has {size} bytes, expected {transfer.fsize}",
                code=self.direction.failed_code,
                retryable=True,
            )
        if expected is None:
            return None, size
        actual = checksum_of_file(path, expected.algorithm)
        if actual != expected:
            self._remove_bad_copy(transfer, path)
            raise _checksum_error(self.direction, path, actual, expected, "expected")
        return actual, size

    def _remove_bad_copy(self, transfer: Transfer, path: Path) -> None:
        """Remove a copy that failed verification, unless the source is gone (then it is the only one)."""
        source_gone = scheme_of(transfer.source) == "file" and not os.path.lexists(
            local_path(transfer.source)
        )
        if source_gone:
            log.warning(
                "%s of %s: keeping the bad copy %s: its source is gone", self.what, transfer.lfn, path
            )
            return
        path.unlink(missing_ok=True)

    def _discard_partial(self, transfer: Transfer) -> None:
        """After a failed stage-in attempt: remove what a tool may have left at the destination."""
        if self.direction is not Direction.IN or scheme_of(transfer.destination) != "file":
            return
        dest = local_path(transfer.destination)
        if not os.path.lexists(dest):
            return
        source = local_path(transfer.source) if scheme_of(transfer.source) == "file" else None
        if (
            source is not None
            and os.path.exists(source)
            and os.path.exists(dest)
            and os.path.samefile(source, dest)
        ):
            return  # the destination is the source itself
        if source is not None and not os.path.exists(source):
            return  # mv may have moved it there: the only copy
        try:
            os.unlink(dest)
        except OSError as exc:
            log.warning("%s of %s: cannot remove %s: %s", self.what, transfer.lfn, dest, exc)

    def _failed(
        self, transfer: Transfer, start: float, attempts: int, failures: list[_Failure]
    ) -> TransferResult:
        last = failures[-1]
        parts = []
        for failure in failures:
            text = failure.error.message
            stderr = str(failure.error.context.get("stderr", "")).strip()
            if stderr and stderr not in text:
                text += f" [stderr: {stderr[-200:]}]"
            if failure.tool:
                plural = "s" if failure.attempts != 1 else ""
                text = f"{failure.tool} ({failure.attempts} attempt{plural}): {text}"
            parts.append(text)
        return TransferResult(
            transfer,
            ok=False,
            tool=last.tool,
            attempts=attempts,
            seconds=self.clock() - start,
            error_code=last.error.code,
            error_diag=f"{self.what} of {transfer.lfn} failed: " + "; ".join(parts),
        )


class StageInClient(StagingClient):
    """Brings a job's inputs into its directory (tools: ``data.stagein_tools``)."""

    fixed_direction = Direction.IN

    @classmethod
    def from_settings(
        cls, settings: DataSettings, *, tools: str | Sequence[str] | None = None, **kwargs: Any
    ) -> StageInClient:
        """A client with the chain of ``data.stagein_tools`` (or ``tools``: names, or comma-separated).

        ``kwargs`` as for `StagingClient`.
        """
        chain = settings.stagein_tools if tools is None else _names(tools)
        return cls(settings, Direction.IN, chain, **kwargs)

    def plan(self, job: Job, job_dir: Path, top: Path | None = None) -> list[Transfer]:
        """The transfers that bring ``job``'s inputs into ``job_dir``.

        An input already in ``job_dir`` (a file, or a link to one: Harvester links inputs in) or at
        ``top`` (the work directory's top, where one-job-per-worker inputs are) needs nothing. Any
        other comes from ``data.stagein_source``.

        Raises
        ------
        StagingError
            1103 if an input is missing and ``data.stagein_source`` is empty; 1099 if its location
            cannot be made (the template needs a field the job does not give) or its name is unsafe.
        """
        transfers = []
        for spec in job.input_files:
            dest = self._destination(job, job_dir, spec)
            if dest.is_file() or (top is not None and (top / spec.lfn).is_file()):
                continue
            if not self.settings.stagein_source:
                where = f"{job_dir}" + (f" nor in {top}" if top is not None else "")
                raise StagingError(
                    f"input {spec.lfn} of job {job.panda_id} is not in {where}, and data.stagein_source "
                    "is empty: there is nowhere to stage it in from",
                    code=ErrorCode.NO_SUCH_FILE,
                    context={"lfn": spec.lfn, "PandaID": job.panda_id},
                )
            source = self._location(self.settings.stagein_source, spec, job.panda_id)
            transfers.append(
                Transfer(
                    lfn=spec.lfn,
                    source=source,
                    destination=str(dest),
                    direction=Direction.IN,
                    fsize=spec.fsize,
                    checksum=spec.checksum,
                    guid=spec.guid,
                )
            )
        return transfers

    def _destination(self, job: Job, job_dir: Path, spec: FileSpec) -> Path:
        try:
            check_file_name(spec.lfn, what="input file name")
        except ValueError as exc:
            raise StagingError(
                str(exc), code=self.direction.failed_code, context={"PandaID": job.panda_id}
            ) from None
        dest = job_dir / spec.lfn
        if os.path.normpath(dest.parent) != os.path.normpath(job_dir):
            raise StagingError(
                f"input {spec.lfn!r} would land outside {job_dir}",
                code=self.direction.failed_code,
                context={"PandaID": job.panda_id},
            )
        return dest


class StageOutClient(StagingClient):
    """Sends a job's outputs (or its log) to their destination.

    Parameters
    ----------
    destination
        The URL template of the destination (default: ``data.stageout_destination``).
    """

    fixed_direction = Direction.OUT

    def __init__(
        self,
        settings: DataSettings,
        direction: Direction,
        tools: Sequence[str],
        *,
        destination: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(settings, direction, tools, **kwargs)
        self.destination = settings.stageout_destination if destination is None else destination

    @classmethod
    def from_settings(
        cls,
        settings: DataSettings,
        *,
        log: bool = False,
        tools: str | Sequence[str] | None = None,
        destination: str | None = None,
        **kwargs: Any,
    ) -> StageOutClient:
        """A client for outputs, or with ``log`` for the log tarball.

        Outputs use ``data.stageout_tools`` and ``data.stageout_destination``; the log uses
        ``data.log_tools`` and ``data.log_destination``, each falling back to the outputs' when empty.
        ``tools`` (names, or comma-separated) and ``destination``, when given, are used instead.
        """
        chain = settings.stageout_tools
        if tools is not None:
            chain = _names(tools)
        elif log:
            chain = settings.log_tools or settings.stageout_tools
        if destination is None and log:
            destination = settings.log_destination or settings.stageout_destination
        return cls(settings, Direction.OUT, chain, destination=destination, **kwargs)

    @staticmethod
    def described(job: Job, paths: Sequence[Path], *, log: bool = False) -> list[tuple[FileSpec, Path]]:
        """Each path with its description, for `plan`.

        The description is the job's output of that name (with ``log``: the job's ``logFile``), or a
        bare one of the name when the job declares none.
        """
        if log:
            return [(job.log_file or FileSpec(path.name), path) for path in paths]
        specs = {spec.lfn: spec for spec in job.output_files}
        return [(specs.get(path.name) or FileSpec(path.name), path) for path in paths]

    @property
    def enabled(self) -> bool:
        """Whether a destination is configured (else outputs stay where they are, for Harvester)."""
        return bool(self.destination)

    def plan(self, job: Job, files: Sequence[tuple[FileSpec, Path]]) -> list[Transfer]:
        """The transfers that send ``files`` (each a file's description and its local path) out.

        Raises
        ------
        StagingError
            1137 if no destination is configured, or a destination cannot be made (the template needs
            a field the job does not give).
        """
        if not self.enabled:
            raise StagingError(
                "no stage-out destination is configured (data.stageout_destination / data.log_destination)",
                code=self.direction.failed_code,
                context={"PandaID": job.panda_id},
            )
        transfers = []
        for spec, path in files:
            destination = self._location(self.destination, spec, job.panda_id)
            transfers.append(
                Transfer(
                    lfn=spec.lfn,
                    source=str(path),
                    destination=destination,
                    direction=Direction.OUT,
                    fsize=spec.fsize,
                    checksum=spec.checksum,
                    guid=spec.guid,
                    overwrite=self.settings.stageout_overwrite,
                )
            )
        return transfers


def _names(tools: str | Sequence[str]) -> tuple[str, ...]:
    """Copytool names given as a list, or comma-separated as the Pilot API takes them."""
    return split_list(tools) if isinstance(tools, str) else tuple(tools)


def _checksum_error(
    direction: Direction, path: Path, actual: Checksum, expected: Checksum, which: str
) -> StagingError:
    return StagingError(
        f"checksum mismatch: {path} has {actual}, {which} {expected}",
        code=direction.checksum_code,
    )
