"""Run a merger in its own process: ``python -m hpcpilot.payload.merge_cli``.

Usage:

    python -m hpcpilot.payload.merge_cli --merger NAME --inputs LISTFILE --output PATH

``NAME`` is an entry point of the ``hpcpilot.mergers`` group. ``LISTFILE`` is a JSON list of objects
``{"path", "range_id", "start_event", "last_event", "adler32"}`` (relative paths are relative to the
working directory). On success one JSON line ``{"nEvents": N, "fsize": bytes, "adler32": hex}`` is
printed to stdout and the exit code is 0; if the merge, the list or the merger is bad, the message
goes to stderr and the exit code is 2; if the disk is full (``ENOSPC``), it is 3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from hpcpilot.data.checksums import adler32_of_file
from hpcpilot.model.errors import ErrorCode, HpcPilotError, PayloadError
from hpcpilot.payload.merge import MergeInput, Merger
from hpcpilot.plugins import load_plugin
from hpcpilot.runtime.diskspace import is_disk_full

#: Exit code when the merge fails.
EXIT_MERGE_FAILED = 2
#: Exit code when the merge fails because the disk is full (the merge may be retried later).
EXIT_NO_SPACE = 3


def load_merger(name: str) -> Merger:
    """Instantiate the merger ``name``: an ``hpcpilot.mergers`` entry point or a ``module:Class`` path.

    Raises
    ------
    PluginError
        If no such merger exists, it cannot be loaded, or it is not a `Merger` class.
    """
    return load_plugin("mergers", name, Merger)()


def read_inputs(list_file: Path) -> list[MergeInput]:
    """Read the JSON list of merge inputs.

    Raises
    ------
    PayloadError
        If the file cannot be read, is not JSON, or an entry lacks a field or has a wrong type.
    """
    try:
        entries = json.loads(list_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PayloadError(f"cannot read merge input list {list_file}: {exc}") from exc
    if not isinstance(entries, list):
        raise PayloadError(f"merge input list {list_file} is not a JSON list")
    return [_merge_input(list_file, index, entry) for index, entry in enumerate(entries)]


def _merge_input(list_file: Path, index: int, entry: Any) -> MergeInput:
    """Convert one entry of the input list."""
    where = f"merge input list {list_file}, entry {index}"
    if not isinstance(entry, dict):
        raise PayloadError(f"{where} is not an object")
    for name, kind in (
        ("path", str),
        ("range_id", str),
        ("start_event", int),
        ("last_event", int),
        ("adler32", str),
    ):
        value = entry.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise PayloadError(f"{where}: field {name} must be a {kind.__name__}, got {value!r}")
    return MergeInput(
        path=Path(entry["path"]),
        range_id=entry["range_id"],
        start_event=entry["start_event"],
        last_event=entry["last_event"],
        adler32=entry["adler32"],
    )


def run(merger_name: str, list_file: Path, output: Path) -> dict[str, Any]:
    """Merge the listed inputs into ``output`` and return the summary printed on success.

    Raises
    ------
    HpcPilotError
        If the merger cannot be loaded, the list is bad or the merge fails.
    """
    merger = load_merger(merger_name)
    n_events = merger.merge(read_inputs(list_file), output)
    return {
        "nEvents": n_events,
        "fsize": output.stat().st_size,
        "adler32": adler32_of_file(output),
    }


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m hpcpilot.payload.merge_cli",
        description="Merge an event-service job's per-range outputs into one file.",
    )
    parser.add_argument("--merger", required=True, help="entry point in hpcpilot.mergers")
    parser.add_argument("--inputs", required=True, type=Path, help="JSON list of merge inputs")
    parser.add_argument("--output", required=True, type=Path, help="merged output file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0).

    A failed merge ends the process at once with its exit code (`exit_now`), before the failed
    merger's objects are torn down.
    """
    args = build_parser().parse_args(argv)
    try:
        summary = run(args.merger, args.inputs, args.output)
    except (HpcPilotError, OSError) as exc:  # OSError: a merger plugin that lets one through
        print(f"merge_cli: {exc}", file=sys.stderr)
        exit_now(EXIT_NO_SPACE if _no_space(exc) else EXIT_MERGE_FAILED)
    print(json.dumps(summary), flush=True)
    return 0


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` without tearing the interpreter down.

    After a failed merge a library may still hold a half-written file: libhdf5 crashes (SIGSEGV)
    freeing one whose writes failed on a full disk, and the exit code must say what happened.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _no_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it came from) says the disk is full."""
    return (isinstance(exc, HpcPilotError) and exc.code is ErrorCode.NO_LOCAL_SPACE) or is_disk_full(exc)


if __name__ == "__main__":
    exit_now(main())
