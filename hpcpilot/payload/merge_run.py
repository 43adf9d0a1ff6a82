"""Running a merge from rank 0 without blocking it: the merger in a child process, polled.

Before a merge starts, what a killed merge of the same output left (its temporary file) is removed
and the free space is checked: a merge that cannot fit fails at once with 1098 instead of filling the
disk. A merge that fails for a cause that may pass (no space, killed by a signal) raises a *retryable*
error: the range outputs are intact, and a later run can merge them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from hpcpilot.model.errors import ErrorCode, PayloadError
from hpcpilot.model.results import OutputFile
from hpcpilot.payload.exitcodes import signal_code
from hpcpilot.payload.merge import MergeInput, Merger
from hpcpilot.payload.merge_cli import EXIT_NO_SPACE
from hpcpilot.plugins import load_plugin, plugin_names
from hpcpilot.runtime.atomic import leftover_temporaries, write_json_atomic
from hpcpilot.runtime.process import ProcessGroup, tail_of_file

log = logging.getLogger(__name__)

#: Room a merged file may need beyond the sum of its inputs (headers, provenance): this fraction ...
MERGE_SLACK = 0.05
#: ... plus this many bytes.
MERGE_SLACK_BYTES = 1 << 20


def choose_merger(setting: str, output_name: str) -> str | None:
    """The merger plugin to use for an output file, or None for no merge.

    Parameters
    ----------
    setting
        ``eventservice.merger``: ``none``, ``auto`` (by the output's extension) or a plugin name.
    output_name
        The job's output file name.
    """
    if setting == "none":
        return None
    if setting != "auto":
        return setting
    suffix = Path(output_name).suffix.lower()
    for name in plugin_names("mergers"):
        cls = load_plugin("mergers", name, Merger)
        if suffix in cls.extensions:
            return name
    return None


def merge_space_needed(input_bytes: int, keep_free_bytes: int = 0) -> int:
    """Free bytes a merge of ``input_bytes`` of inputs needs: the inputs, `MERGE_SLACK`, and the floor.

    ``keep_free_bytes`` is what must stay free after the merge (``monitor.min_free_disk_mb``).
    """
    slack = math.ceil(input_bytes * MERGE_SLACK) + MERGE_SLACK_BYTES
    return input_bytes + slack + max(keep_free_bytes, 0)


def check_merge_space(output: Path, input_bytes: int, keep_free_bytes: int = 0) -> None:
    """Raise unless ``output``'s filesystem has the room `merge_space_needed` asks for.

    Raises
    ------
    PayloadError
        With 1098 (``NO_LOCAL_SPACE``), retryable, naming what is needed and what is free.
    """
    needed = merge_space_needed(input_bytes, keep_free_bytes)
    try:
        free = shutil.disk_usage(output.parent).free
    except OSError as exc:
        raise PayloadError(
            f"cannot tell the free space for the merge: {exc}",
            code=ErrorCode.NO_LOCAL_SPACE,
            retryable=True,
            context={"output": str(output)},
        ) from None
    if free < needed:
        raise PayloadError(
            f"not enough free space to merge: {_mib(needed)} MiB needed "
            f"({_mib(input_bytes)} MiB of range outputs, slack, {_mib(keep_free_bytes)} MiB kept free), "
            f"{_mib(free)} MiB free; the range outputs are kept for a later merge",
            code=ErrorCode.NO_LOCAL_SPACE,
            retryable=True,
            context={"output": str(output)},
        )


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}"


def remove_leftovers(output: Path) -> int:
    """Remove the temporary files a killed merge of ``output`` left beside it; return how many."""
    removed = 0
    for tmp in leftover_temporaries(output):
        try:
            tmp.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot remove %s, left by an earlier merge: %s", tmp, exc)
            continue
        log.warning("removed %s, left by an earlier merge that did not end", tmp.name)
        removed += 1
    return removed


class MergeProcess:
    """One merge, running as ``python -m hpcpilot.payload.merge_cli`` in its own process group.

    What a killed merge of the same output left is removed first, then the free space is checked
    (`check_merge_space`), then the child starts.

    Parameters
    ----------
    merger
        The merger plugin name.
    inputs
        The per-range outputs, with provenance.
    output
        The merged file to write.
    log_dir
        Where ``merge.out`` / ``merge.err`` and the input list go.
    input_bytes
        The inputs' total size (from the books: no file is looked at for it).
    keep_free_bytes
        What must stay free on the output's filesystem after the merge.

    Raises
    ------
    PayloadError
        1098 (retryable) if the merge does not fit.
    OSError
        If the input list or the logs cannot be written, or the child cannot start.
    """

    def __init__(
        self,
        merger: str,
        inputs: Sequence[MergeInput],
        output: Path,
        log_dir: Path,
        input_bytes: int = 0,
        keep_free_bytes: int = 0,
    ) -> None:
        self.output = output
        remove_leftovers(output)
        check_merge_space(output, input_bytes, keep_free_bytes)
        self._out = log_dir / "merge.out"
        self._err = log_dir / "merge.err"
        listing = log_dir / "merge_inputs.json"
        write_json_atomic(listing, [{**asdict(i), "path": str(i.path)} for i in inputs], indent=None)
        argv = [
            sys.executable,
            "-m",
            "hpcpilot.payload.merge_cli",
            "--merger",
            merger,
            "--inputs",
            str(listing),
            "--output",
            str(output),
        ]
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self._proc = ProcessGroup(argv, cwd=log_dir, env=os.environ, stdout=out, stderr=err)

    def poll(self) -> OutputFile | None:
        """The merged file once the merge succeeded; None while it runs.

        Raises
        ------
        PayloadError
            If the merge failed (the diagnosis is the tail of its stderr): retryable with 1098 when
            the disk was full, with the signal's code (1201 SIGTERM, 1203 SIGSEGV, ...) when a signal
            ended it; 1305 otherwise.
        """
        info = self._proc.poll()
        if info is None:
            return None
        if info.returncode != 0:
            raise merge_failure(info.returncode, tail_of_file(self._err, 0, 400), self.output)
        try:
            reply = json.loads(self._out.read_text().strip().splitlines()[-1])
            return OutputFile(str(self.output), int(reply["fsize"]), str(reply["adler32"]))
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise PayloadError(
                f"merge gave no result line: {exc}",
                code=ErrorCode.PAYLOAD_EXECUTION_FAILURE,
                context={"output": str(self.output)},
            ) from None

    def kill(self, grace_s: float) -> None:
        """Stop the merge's process group."""
        self._proc.stop(grace_s)


def merge_failure(returncode: int, stderr_tail: str, output: Path) -> PayloadError:
    """The error of a merge child that ended with ``returncode`` (non-zero).

    A full disk (`EXIT_NO_SPACE`) and a signal (a kill at the end of the run, a crash of the library
    on a full disk) are retryable: the range outputs are intact and a later run may merge them.
    """
    context = {"output": str(output)}
    if returncode == EXIT_NO_SPACE:
        return PayloadError(
            f"merge failed, no space left: {stderr_tail or 'the disk is full'}",
            code=ErrorCode.NO_LOCAL_SPACE,
            retryable=True,
            context=context,
        )
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return PayloadError(
            f"merge ended by {name}{f': {stderr_tail}' if stderr_tail else ''}",
            code=signal_code(-returncode),
            retryable=True,
            context=context,
        )
    return PayloadError(
        f"merge failed: {stderr_tail or f'exit code {returncode}'}",
        code=ErrorCode.PAYLOAD_EXECUTION_FAILURE,
        context=context,
    )
