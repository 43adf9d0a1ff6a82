"""Copytools for a shared or node-local filesystem: ``cp``, ``mv`` and ``symlink``.

They run in-process (`shutil`/`os`, no command), for local paths and ``file://`` URLs only:

* ``cp`` copies to a temporary name in the destination directory and renames it, so a reader never
  sees a half-written file under the final name;
* ``mv`` renames (atomic on one filesystem); across filesystems it copies as ``cp`` does, then removes
  the source;
* ``symlink`` links the destination to the source's absolute path (atomically, through a temporary
  link).

A stage-out never replaces a file that is already at its destination unless the transfer says so
(``Transfer.overwrite``, from ``data.stageout_overwrite``): a file with the same size and adler32 as the
source counts as already there (an earlier attempt of this job put it there), any other fails the
transfer (1137, not retried) and is left as it was. The check is made just before the copy.

Errors: a missing source is 1103 (no such file), a full disk or quota 1098 (no local space), any other
`OSError` the direction's failed code (1099/1137), retryable only for transient errnos (EIO, EAGAIN,
EBUSY, ESTALE, ETIMEDOUT, EINTR). Local copies are not bounded by the per-file timeout: nothing here can
be interrupted, and a local copy does not hang on a network.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from abc import abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

from hpcpilot.data.checksums import checksum_of_file
from hpcpilot.data.copytools.base import Copytool, local_path
from hpcpilot.data.transfer import Direction, Transfer
from hpcpilot.model.errors import ErrorCode, StagingError
from hpcpilot.model.job import Checksum, ChecksumAlgorithm
from hpcpilot.runtime.atomic import atomic_path
from hpcpilot.runtime.commands import CommandResult, run_command

#: errnos after which another attempt may succeed
TRANSIENT_ERRNOS = frozenset(
    {errno.EIO, errno.EAGAIN, errno.EBUSY, errno.ESTALE, errno.ETIMEDOUT, errno.EINTR}
)
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

CopyFile = Callable[[str, str], object]
"""Copies the content of one file to a new path (`shutil.copyfile`); injected to simulate failures."""


class LocalCopytool(Copytool):
    """Base of the in-process filesystem tools.

    Parameters
    ----------
    run, env
        As for every copytool (unused: nothing is run).
    copyfile
        Copies one file's bytes (`shutil.copyfile`, which uses the kernel's in-place copy where it
        can); tests inject a failing one.
    """

    schemes: ClassVar[frozenset[str]] = frozenset({"file"})
    network: ClassVar[bool] = False
    #: What the tool does, for messages.
    verb: ClassVar[str] = "copy"

    def __init__(
        self,
        run: Callable[..., CommandResult] = run_command,
        env: Mapping[str, str] | None = None,
        *,
        copyfile: CopyFile = shutil.copyfile,
    ) -> None:
        super().__init__(run, env)
        self.copyfile = copyfile

    def copy(self, transfer: Transfer, timeout_s: float) -> Checksum | None:
        """Move one file on the filesystem; see the module's notes for the error codes."""
        source = Path(local_path(transfer.source))
        dest = Path(local_path(transfer.destination))
        if not source.is_file():
            what = "does not exist" if not source.exists() else "is not a regular file"
            code = ErrorCode.NO_SUCH_FILE if not source.exists() else transfer.direction.failed_code
            raise StagingError(
                f"{self.verb}: source {source} {what} ({transfer.lfn})",
                code=code,
                context={"source": str(source)},
            )
        try:
            if dest.exists() and os.path.samefile(source, dest):
                return None  # already in place (a link to it, or the same path)
            if self.keeps_existing(transfer) and os.path.lexists(dest):
                if same_content(source, dest, transfer.checksum):
                    return None  # an earlier attempt of this job put it there
                raise StagingError(
                    f"{self.verb}: {dest} already exists and is not this job's file; it is left alone "
                    f"(data.stageout_overwrite is off) ({transfer.lfn})",
                    code=transfer.direction.failed_code,
                    context={"path": str(dest)},
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            self.place(source, dest)
        except OSError as exc:
            raise self.os_error(transfer, exc, source, dest) from exc
        return None

    @staticmethod
    def keeps_existing(transfer: Transfer) -> bool:
        """Whether an existing destination must be left alone: a stage-out without ``overwrite``."""
        return transfer.direction is Direction.OUT and not transfer.overwrite

    @abstractmethod
    def place(self, source: Path, dest: Path) -> None:
        """Make ``dest`` hold ``source``'s content (an existing ``dest`` is replaced)."""

    def copy_via_temp(self, source: Path, dest: Path) -> None:
        """Copy ``source`` to a temporary name beside ``dest``, then rename it to ``dest``."""
        with atomic_path(dest, durable=False) as tmp:  # verified by checksum afterwards, not fsynced
            self.copyfile(str(source), str(tmp))

    def os_error(self, transfer: Transfer, exc: OSError, source: Path, dest: Path) -> StagingError:
        """The `StagingError` for an `OSError` of moving ``source`` to ``dest``."""
        if exc.errno == errno.ENOENT and exc.filename == str(source):
            code, retryable = ErrorCode.NO_SUCH_FILE, False
        elif exc.errno in _NO_SPACE_ERRNOS:
            code, retryable = ErrorCode.NO_LOCAL_SPACE, False
        else:
            code, retryable = transfer.direction.failed_code, exc.errno in TRANSIENT_ERRNOS
        reason = exc.strerror or str(exc)
        return StagingError(
            f"{self.verb} {source} -> {dest} failed: {reason} ({transfer.lfn})",
            code=code,
            retryable=retryable,
            context={"errno": errno.errorcode.get(exc.errno or 0, exc.errno), "path": exc.filename or ""},
        )


class CpCopytool(LocalCopytool):
    """``cp``: copy to a temporary name in the destination directory, then rename."""

    verb = "cp"

    def place(self, source: Path, dest: Path) -> None:
        """Copy through a temporary file and an atomic rename."""
        self.copy_via_temp(source, dest)


class MvCopytool(LocalCopytool):
    """``mv``: rename (atomic on one filesystem); across filesystems copy, rename, remove the source."""

    verb = "mv"

    def place(self, source: Path, dest: Path) -> None:
        """Rename, or copy and remove the source across filesystems."""
        try:
            os.replace(source, dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self.copy_via_temp(source, dest)
            source.unlink()


class SymlinkCopytool(LocalCopytool):
    """``symlink``: the destination becomes a link to the source's absolute path."""

    verb = "symlink"

    def place(self, source: Path, dest: Path) -> None:
        """Create a link at a temporary name and rename it over ``dest``."""
        tmp = temp_name(dest)
        try:
            os.symlink(os.path.abspath(source), tmp)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def same_content(source: Path, dest: Path, checksum: Checksum | None) -> bool:
    """Whether ``dest`` is a regular file with ``source``'s size and adler32 (``checksum``, if adler32)."""
    if dest.is_symlink() or not dest.is_file() or dest.stat().st_size != source.stat().st_size:
        return False
    if checksum is None or checksum.algorithm is not ChecksumAlgorithm.ADLER32:
        checksum = checksum_of_file(source, ChecksumAlgorithm.ADLER32)
    return checksum_of_file(dest, ChecksumAlgorithm.ADLER32) == checksum


def temp_name(dest: Path) -> Path:
    """A hidden, unique temporary name in ``dest``'s directory (within the 255-byte name limit)."""
    return dest.with_name(f".{dest.name[:200]}.{os.getpid()}.{secrets.token_hex(4)}.part")
