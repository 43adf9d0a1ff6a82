"""Running a merge from rank 0 without blocking it: the merger in a child process, polled."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from hpcpilot.model.errors import ErrorCode, PayloadError
from hpcpilot.model.results import OutputFile
from hpcpilot.payload.merge import MergeInput, Merger
from hpcpilot.plugins import load_plugin, plugin_names
from hpcpilot.runtime.atomic import write_json_atomic
from hpcpilot.runtime.process import ProcessGroup, tail_of_file


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


class MergeProcess:
    """One merge, running as ``python -m hpcpilot.payload.merge_cli`` in its own process group.

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
    """

    def __init__(self, merger: str, inputs: Sequence[MergeInput], output: Path, log_dir: Path) -> None:
        self.output = output
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
            If the merge failed (the diagnosis is the tail of its stderr).
        """
        info = self._proc.poll()
        if info is None:
            return None
        if info.returncode != 0:
            raise PayloadError(
                f"merge failed: {tail_of_file(self._err, 0, 400) or f'exit code {info.returncode}'}",
                code=ErrorCode.PAYLOAD_EXECUTION_FAILURE,
                context={"output": str(self.output)},
            )
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
