"""Fake PBS Pro and LSF commands sharing one queue (see _batchq.py), and a replaying command runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from hpcpilot.runtime.commands import CommandResult

BIN = Path(__file__).resolve().parent
"""The directory of the fake commands (put it first on PATH)."""
DATA = BIN.parent.parent / "data"
"""``tests/data``: recorded outputs."""


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
