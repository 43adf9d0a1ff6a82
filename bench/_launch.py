"""What the benchmarks share to start MPI runs: which launcher, its environment, and why a run ended.

The launcher is, first found: ``--mpiexec PATH``, the ``MPIEXEC`` environment variable, the ``mpiexec``
beside ``sys.executable`` (the MPICH or Open MPI wheel of a virtualenv), the ``mpiexec`` on ``PATH``
(a system MPI, with mpi4py built against it). The ranks run ``sys.executable``: its mpi4py must match
the launcher's MPI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

#: The environment variable naming the MPI launcher.
MPIEXEC_VAR = "MPIEXEC"

#: Environment variables that hold a process's MPI rank: MPICH/Hydra, Open MPI, PMIx.
RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


def find_mpiexec(
    explicit: str | None = None, env: Mapping[str, str] | None = None, python: str | None = None
) -> str:
    """The MPI launcher: ``explicit``, else ``$MPIEXEC``, else beside ``python``, else on ``PATH``.

    Raises
    ------
    SystemExit
        When none of them names an existing launcher (the message says where it looked).
    """
    environ = os.environ if env is None else env
    beside = Path(python or sys.executable).parent / "mpiexec"
    tried: list[str] = []
    for source, candidate in (
        ("--mpiexec", explicit),
        (f"${MPIEXEC_VAR}", environ.get(MPIEXEC_VAR)),
        ("beside the interpreter", str(beside)),
        ("on PATH", shutil.which("mpiexec", path=environ.get("PATH"))),
    ):
        if not candidate:
            continue
        found = shutil.which(candidate, path=environ.get("PATH")) if os.sep not in candidate else candidate
        if found and Path(found).is_file() and os.access(found, os.X_OK):
            return found
        tried.append(f"{source}: {candidate}")
        if source in ("--mpiexec", f"${MPIEXEC_VAR}"):
            raise SystemExit(f"the MPI launcher {candidate!r} ({source}) is not an executable file")
    raise SystemExit(
        "no MPI launcher found: give --mpiexec PATH or set MPIEXEC, or install MPI beside "
        f"{python or sys.executable} (make venv) or on PATH"
        + (f" (tried {'; '.join(tried)})" if tried else "")
    )


def add_mpiexec_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--mpiexec PATH`` to a benchmark's command line."""
    parser.add_argument(
        "--mpiexec",
        metavar="PATH",
        default=None,
        help=f"the MPI launcher (default: ${MPIEXEC_VAR}, else the mpiexec beside this Python, else on PATH)",
    )


def launch_env(
    extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a launched run: Open MPI may run as root (CI) and oversubscribe (2 cores).

    MPICH ignores these variables; set ones are kept.
    """
    env = dict(os.environ if base is None else base)
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")  # Open MPI 4
    env.setdefault("PRTE_MCA_rmaps_default_mapping_policy", ":oversubscribe")  # Open MPI 5 (PRRTE)
    if extra:
        env.update(extra)
    return env


def rank_of(environ: Mapping[str, str]) -> int | None:
    """A launched process's MPI rank from its environment (None if it is not a rank)."""
    for name in RANK_VARS:
        value = environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return None


def tail(text: str, lines: int = 20) -> str:
    """The last ``lines`` lines of ``text``, indented."""
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in kept) if kept else "    (nothing)"


def exit_words(code: int | None) -> str:
    """An exit status in words (a negative one is the signal that ended it)."""
    if code is None:
        return "did not end"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited {code}"


def why_ended(
    cmd: Sequence[str], code: int | None, output: str, logs: Mapping[str, str] | None = None
) -> str:
    """Why a run ended early: its command, exit status, and the last lines of its output and logs."""
    parts = [f"{Path(cmd[0]).name} run {exit_words(code)}: {' '.join(cmd)}", "  last lines of its output:"]
    parts.append(tail(output))
    for name, text in (logs or {}).items():
        parts += [f"  last lines of {name}:", tail(text)]
    return "\n".join(parts)


class RunEndedError(RuntimeError):
    """A launched run ended early or badly; the message says why (`why_ended`)."""
