"""Node-local scratch: a worker's copies of a job's input files, read by its payloads.

Event-service ranges of one job read the same input files over and over; on a parallel filesystem
every read of every rank goes to the shared servers. With ``data.scratch`` set, a worker copies each
input once to ``<scratch>/<PandaID>/<LFN>`` before the first payload that needs it, and removes the
copies when the job is done on its node. No network, no copytool: a plain local copy.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hpcpilot.runtime.atomic import atomic_path


def scratch_root(setting: str) -> Path | None:
    """The scratch directory of ``data.scratch`` with ``$VAR`` and ``~`` expanded (None if unset)."""
    if not setting.strip():
        return None
    return Path(os.path.expanduser(os.path.expandvars(setting)))


def copy_to_scratch(source: Path, root: Path, panda_id: int) -> Path:
    """Copy ``source`` to ``<root>/<panda_id>/<name>`` (atomically; kept if already there, same size).

    Returns
    -------
    Path
        The copy.

    Raises
    ------
    OSError
        If the copy cannot be made (no space, no such directory ...); the caller reads the shared file.
    """
    target = root / str(panda_id) / source.name
    size = source.stat().st_size
    if target.is_file() and target.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, durable=False) as tmp:  # scratch dies with the job: not fsynced
        shutil.copyfile(source, tmp)
        if tmp.stat().st_size != size:
            raise OSError(f"copy of {source} to {tmp} is incomplete")
    return target


def remove_job_scratch(root: Path, panda_id: int) -> None:
    """Remove a job's copies from the node's scratch (nothing if there are none)."""
    shutil.rmtree(root / str(panda_id), ignore_errors=True)
