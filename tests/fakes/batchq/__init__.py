"""Fake PBS Pro and LSF commands sharing one queue (see _batchq.py), and a replaying command runner."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from hpcpilot.runtime.commands import CommandResult

BIN = Path(__file__).resolve().parent
"""The directory of the fake commands (put it first on PATH)."""
DATA = BIN.parent.parent / "data"
"""``tests/data``: recorded outputs."""


def queue_environment(queue_dir: Path, repo: Path) -> dict[str, str]:
    """This process's environment with the fake commands first on PATH and a fresh queue in
    ``queue_dir``: two nodes ``n1,n2`` of 4 cores, an hour of walltime, ``repo`` importable; no
    variables of an enclosing Slurm, PBS or LSF job."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_", "LSB_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        FAKE_BATCHQ_DIR=str(queue_dir),
        FAKE_BATCHQ_NODES="n1,n2",
        FAKE_BATCHQ_CORES="4",
        FAKE_BATCHQ_WALLTIME="3600",
        PYTHONPATH=os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH", "")])),
    )
    return env


def recorded(name: str) -> str:
    """The text of ``tests/data/NAME``."""
    return (DATA / name).read_text()


class Replay:
    """A `CommandRunner` that answers known argv with canned results and records every call.

    Parameters
    ----------
    answers
        argv (as a tuple) -> result; a value may be a `CommandResult`, or a str (stdout, exit 0).
    """

    def __init__(self, answers: Mapping[tuple[str, ...], CommandResult | str] | None = None) -> None:
        self.answers: dict[tuple[str, ...], CommandResult] = {}
        for argv, value in (answers or {}).items():
            self.add(argv, value)
        self.calls: list[tuple[str, ...]] = []

    def add(
        self, argv: Sequence[str], value: CommandResult | str, *, code: int = 0, stderr: str = ""
    ) -> None:
        """Answer ``argv`` with ``value`` (stdout text with ``code``/``stderr``, or a whole result)."""
        key = tuple(argv)
        self.answers[key] = (
            value if isinstance(value, CommandResult) else CommandResult(key, code, value, stderr)
        )

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        key = tuple(argv)
        self.calls.append(key)
        if key in self.answers:
            return self.answers[key]
        return CommandResult(key, 127, "", f"{key[0]}: not expected by the replay: {' '.join(key)}")
