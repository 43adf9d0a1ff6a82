"""A full disk as the operating system shows it: ENOSPC, free space, a probe write, a space reserve.

The pilot's policy for a full disk (wait for space, then drain with 1098) is in
`hpcpilot.parallel.diskspace`; this module only recognises and measures. A full disk is ``ENOSPC``
(no space left on the device) or ``EDQUOT`` (the quota is used up): both mean that writes fail until
someone frees space, and both are treated alike.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

#: The ``errno`` values of a full disk: no space left on the device, disk quota exceeded.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

#: How a full disk reads in a program's error output (``strerror`` of ENOSPC and EDQUOT, their names).
_DISK_FULL_TEXT = re.compile(r"no space left on device|disk quota exceeded|\bENOSPC\b|\bEDQUOT\b", re.I)

#: Bytes of the probe write that tells whether a directory takes writes again.
PROBE_BYTES = 64 * 1024


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether an exception (or one it was raised from) is an ``OSError`` of a full disk."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def mentions_disk_full(text: str) -> bool:
    """Whether a program's error output says that the disk was full (or the quota used up)."""
    return bool(_DISK_FULL_TEXT.search(text))


def free_mb(path: Path) -> float | None:
    """Free MB for an unprivileged user on the filesystem of ``path`` (None if it cannot be read)."""
    try:
        return shutil.disk_usage(path).free / 2**20
    except OSError:
        return None


def takes_writes(directory: Path, size: int = PROBE_BYTES) -> bool:
    """Whether ``size`` bytes can be written (and fsynced) in ``directory`` now; the probe is removed.

    Free space alone does not tell: a quota may be used up while the filesystem has room.
    """
    try:
        fd, name = tempfile.mkstemp(prefix=".hpcpilot-probe.", dir=directory)
    except OSError:
        return False
    try:
        view = memoryview(bytes(size))
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)


class Reserve:
    """Space held back in a file so that the pilot can still write its last records on a full disk.

    Parameters
    ----------
    path
        The reserve file (in the directory whose space it holds).
    mb
        Its size in MB; 0 keeps no reserve.
    """

    def __init__(self, path: Path, mb: int) -> None:
        self.path = path
        self.mb = mb
        self.held = False

    def make(self) -> bool:
        """Allocate the reserve (replacing an earlier one); False, with a warning, if it cannot be had."""
        if self.mb <= 0:
            return False
        size = self.mb * 2**20
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as exc:
            log.warning("cannot keep a reserve of %d MB in %s: %s", self.mb, self.path.parent, exc)
            return False
        try:
            _allocate(fd, size)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            log.warning("cannot keep a reserve of %d MB in %s: %s", self.mb, self.path.parent, exc)
            return False
        os.close(fd)
        self.held = True
        return True

    def release(self) -> bool:
        """Give the reserved space back (remove the file); whether there was any to give."""
        if not self.held:
            return False
        self.held = False
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.warning("cannot remove the space reserve %s: %s", self.path, exc)
            return False
        return True


def _allocate(fd: int, size: int) -> None:
    """Give the open file ``size`` bytes of real blocks (fallocate, or zeros where it is not supported)."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    chunk = bytes(2**20)
    left = size
    while left > 0:
        left -= os.write(fd, chunk[: min(left, len(chunk))])
