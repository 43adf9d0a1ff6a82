"""A small, deterministic Monte-Carlo "event simulation" payload for demos and tests.

Every event's random numbers come from ``numpy.random.default_rng([seed, event_number])``, so the
content of an event does not depend on which range, process or node generated it. An event holds
a Poisson(20) number of particles (at least one), each with a momentum drawn from a normal
distribution (sigma 10 GeV per component) and the mass of a pion, kaon or proton.

Two modes (``python -m hpcpilot.demo.simulate --help``):

per-range
    ``--range-id ID --first N --last M --output PATH [--seed S] [--lfn LFN]``: simulate events
    ``N..M`` into the HDF5 file ``PATH``; exit 0 on success, 3 on an injected failure
    (``--fail-events``), 1 on any other failure, 2 on a usage error.
streaming
    ``--stream [--seed S]``: read one JSON event range per line on stdin, write its
    ``outputFile`` and answer with exactly one JSON line on stdout per range (``status``
    ``finished`` or ``failed``).
    Blank lines are ignored; end of input ends the process with exit 0. Only replies go to stdout,
    everything else to stderr.

The output file has the datasets ``events`` (`EVENT_DTYPE`) and ``particles``
(`PARTICLE_DTYPE`) and the file attributes ``eventRangeID``, ``startEvent``, ``lastEvent``,
``nEvents``, ``seed``, ``LFN`` and ``generator``. Datasets are created without time stamps, so the
same range with the same seed gives a byte-identical file. Files are written atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import h5py
import numpy as np
import numpy.typing as npt

from hpcpilot.model.errors import ErrorCode, PayloadError
from hpcpilot.runtime.atomic import atomic_path

log = logging.getLogger("hpcpilot.demo.simulate")

#: Value of the output file's ``generator`` attribute.
GENERATOR = "hpcpilot.demo.simulate"
#: Seed used when none is given.
DEFAULT_SEED = 12345
#: Mean of the Poisson distribution of the number of particles per event.
MEAN_PARTICLES = 20.0
#: Standard deviation of each momentum component, in GeV.
MOMENTUM_SIGMA_GEV = 10.0
#: Masses (GeV) a particle is given: pion, kaon, proton.
MASSES_GEV: npt.NDArray[np.float64] = np.array([0.1396, 0.4937, 0.9383], dtype=np.float64)

#: Exit code of per-range mode on success.
EXIT_OK = 0
#: Exit code of per-range mode on a failure other than an injected one.
EXIT_FAILED = 1
#: Exit code of per-range mode when ``--fail-events`` made the range fail.
EXIT_INJECTED_FAILURE = 3

#: One row per event of the ``events`` dataset.
EVENT_DTYPE = np.dtype(
    [
        ("event_number", "<i8"),
        ("n_particles", "<i4"),
        ("sum_e", "<f8"),
        ("sum_pt", "<f8"),
        ("seed", "<i8"),
    ]
)
#: One row per particle of the ``particles`` dataset.
PARTICLE_DTYPE = np.dtype(
    [
        ("event_number", "<i8"),
        ("px", "<f8"),
        ("py", "<f8"),
        ("pz", "<f8"),
        ("e", "<f8"),
        ("m", "<f8"),
    ]
)

#: Fields a streaming request must have (``PFN`` is optional).
REQUIRED_FIELDS = ("eventRangeID", "startEvent", "lastEvent", "LFN", "GUID", "scope", "outputFile")

FailMode = Literal["always", "first"]


class InjectedFailureError(PayloadError):
    """A range failed on purpose because it contains one of the ``--fail-events``."""


@dataclass(frozen=True, slots=True)
class RangeRequest:
    """One event range to simulate.

    Attributes
    ----------
    range_id
        The event range id, recorded in the output's ``eventRangeID`` attribute.
    first, last
        The first and last event number (inclusive).
    output
        The HDF5 file to write.
    lfn
        The input LFN the range refers to (recorded only; may be empty).
    """

    range_id: str
    first: int
    last: int
    output: Path
    lfn: str = ""

    @property
    def n_events(self) -> int:
        """The number of events in the range."""
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class FailurePlan:
    """Which ranges fail on purpose (for tests).

    Attributes
    ----------
    events
        A range containing one of these event numbers fails.
    mode
        ``always``: such a range always fails. ``first``: it fails only while the marker
        ``<output>.failed-once`` does not exist, and creates the marker when it fails.
    """

    events: frozenset[int] = field(default_factory=frozenset)
    mode: FailMode = "always"

    def check(self, request: RangeRequest) -> None:
        """Raise if ``request`` is to fail.

        Raises
        ------
        InjectedFailureError
            If the range contains a failing event (and, in ``first`` mode, has not failed before).
        """
        hits = sorted(e for e in self.events if request.first <= e <= request.last)
        if not hits:
            return
        if self.mode == "first":
            marker = failed_once_marker(request.output)
            if marker.exists():
                return
            marker.touch()
        raise InjectedFailureError(
            f"range {request.range_id} contains failing event {hits[0]}",
            context={"eventRangeID": request.range_id, "mode": self.mode},
        )


@dataclass(frozen=True, slots=True)
class RangeResult:
    """What simulating one range took.

    Attributes
    ----------
    n_events
        The number of events written.
    cpu, wall
        CPU and wall-clock seconds spent on the range.
    """

    n_events: int
    cpu: float
    wall: float


def failed_once_marker(output: Path) -> Path:
    """Return the marker file ``--fail-mode first`` creates next to ``output``."""
    return output.with_name(output.name + ".failed-once")


def simulate_event(seed: int, event_number: int) -> npt.NDArray[np.void]:
    """Simulate one event.

    Parameters
    ----------
    seed
        The job's seed (non-negative).
    event_number
        The event's number (non-negative); with ``seed`` it fully determines the event.

    Returns
    -------
    numpy.ndarray
        The event's particles, with dtype `PARTICLE_DTYPE`.
    """
    rng = np.random.default_rng([seed, event_number])
    n = max(1, int(rng.poisson(MEAN_PARTICLES)))
    momenta = rng.normal(0.0, MOMENTUM_SIGMA_GEV, size=(n, 3))
    masses = rng.choice(MASSES_GEV, size=n)
    particles = np.zeros(n, dtype=PARTICLE_DTYPE)
    particles["event_number"] = event_number
    particles["px"] = momenta[:, 0]
    particles["py"] = momenta[:, 1]
    particles["pz"] = momenta[:, 2]
    particles["m"] = masses
    particles["e"] = np.sqrt(np.sum(momenta * momenta, axis=1) + masses * masses)
    return particles


def summarize_event(particles: npt.NDArray[np.void], seed: int) -> tuple[int, int, float, float, int]:
    """Return an event's row of the ``events`` dataset from its particles."""
    pt = np.hypot(particles["px"], particles["py"])
    return (
        int(particles["event_number"][0]),
        len(particles),
        float(np.sum(particles["e"])),
        float(np.sum(pt)),
        seed,
    )


def simulate_range(
    seed: int, first: int, last: int, *, sleep_per_event: float = 0.0
) -> tuple[npt.NDArray[np.void], npt.NDArray[np.void]]:
    """Simulate events ``first..last`` (inclusive).

    Parameters
    ----------
    seed
        The job's seed.
    first, last
        The event numbers; ``0 <= first <= last``.
    sleep_per_event
        Seconds to sleep after each event (to make a payload take time).

    Returns
    -------
    tuple of numpy.ndarray
        ``(events, particles)`` with dtypes `EVENT_DTYPE` and `PARTICLE_DTYPE`.
    """
    events = np.zeros(last - first + 1, dtype=EVENT_DTYPE)
    chunks: list[npt.NDArray[np.void]] = []
    for row, number in enumerate(range(first, last + 1)):
        particles = simulate_event(seed, number)
        events[row] = summarize_event(particles, seed)
        chunks.append(particles)
        if sleep_per_event > 0:
            time.sleep(sleep_per_event)
    return events, np.concatenate(chunks)


def write_output(
    request: RangeRequest,
    seed: int,
    events: npt.NDArray[np.void],
    particles: npt.NDArray[np.void],
) -> None:
    """Write a range's output file atomically.

    The file is written beside the output under a temporary name, closed, fsynced and renamed over
    the output (`hpcpilot.runtime.atomic.atomic_path`); the temporary file is removed on failure.
    """
    with atomic_path(request.output) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset("events", data=events, track_times=False)
        handle.create_dataset("particles", data=particles, track_times=False)
        _set_attributes(handle.attrs, request, seed, len(events))


def _set_attributes(attrs: Any, request: RangeRequest, seed: int, n_events: int) -> None:
    """Set the output file's attributes."""
    attrs["eventRangeID"] = request.range_id
    attrs["startEvent"] = np.int64(request.first)
    attrs["lastEvent"] = np.int64(request.last)
    attrs["nEvents"] = np.int64(n_events)
    attrs["seed"] = np.int64(seed)
    attrs["LFN"] = request.lfn
    attrs["generator"] = GENERATOR


def run_range(
    request: RangeRequest,
    *,
    seed: int,
    plan: FailurePlan,
    sleep_per_event: float = 0.0,
) -> RangeResult:
    """Check for an injected failure, simulate a range and write its output.

    Raises
    ------
    InjectedFailureError
        If ``plan`` makes the range fail.
    PayloadError
        If the range's event numbers are invalid.
    OSError
        If the output cannot be written.
    """
    _check_events(request)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    plan.check(request)
    events, particles = simulate_range(seed, request.first, request.last, sleep_per_event=sleep_per_event)
    write_output(request, seed, events, particles)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    log.info(
        "range %s: events %d..%d -> %s (%.3f s)",
        request.range_id,
        request.first,
        request.last,
        request.output,
        wall,
    )
    return RangeResult(n_events=len(events), cpu=cpu, wall=wall)


def _check_events(request: RangeRequest) -> None:
    """Raise `PayloadError` unless ``0 <= first <= last``."""
    if request.first < 0 or request.last < request.first:
        raise PayloadError(
            f"range {request.range_id}: need 0 <= startEvent <= lastEvent, "
            f"got {request.first}..{request.last}",
            context={"eventRangeID": request.range_id},
        )


def parse_request(message: Any) -> RangeRequest:
    """Turn one streaming request (a decoded JSON object) into a `RangeRequest`.

    Raises
    ------
    PayloadError
        If ``message`` is not an object, lacks a field, or a field has the wrong type.
    """
    if not isinstance(message, dict):
        raise PayloadError(f"request is a JSON {type(message).__name__}, not an object")
    missing = [name for name in REQUIRED_FIELDS if name not in message]
    if missing:
        raise PayloadError(f"request lacks field(s) {', '.join(missing)}")
    return RangeRequest(
        range_id=_str_field(message, "eventRangeID", allow_empty=False),
        first=_int_field(message, "startEvent"),
        last=_int_field(message, "lastEvent"),
        output=Path(_str_field(message, "outputFile", allow_empty=False)),
        lfn=_str_field(message, "LFN", allow_empty=True),
    )


def _str_field(message: Mapping[str, Any], name: str, *, allow_empty: bool) -> str:
    """Return a string field of a request (``null`` counts as empty)."""
    value = message[name]
    if value is None and allow_empty:
        return ""
    if not isinstance(value, str) or (not value and not allow_empty):
        raise PayloadError(f"request field {name} must be a non-empty string, got {value!r}")
    return value


def _int_field(message: Mapping[str, Any], name: str) -> int:
    """Return an integer field of a request."""
    value = message[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError(f"request field {name} must be an integer, got {value!r}")
    return value


def finished_reply(request: RangeRequest, result: RangeResult) -> dict[str, Any]:
    """Return the streaming reply for a range that was simulated."""
    return {
        "eventRangeID": request.range_id,
        "status": "finished",
        "outputFile": str(request.output),
        "nEvents": result.n_events,
        "cpu": round(result.cpu, 6),
        "wall": round(result.wall, 6),
    }


def failed_reply(range_id: str | None, diag: str) -> dict[str, Any]:
    """Return the streaming reply for a range (or line) that failed."""
    return {
        "eventRangeID": range_id,
        "status": "failed",
        "errorCode": int(ErrorCode.PAYLOAD_EXECUTION_FAILURE),
        "errorDiag": diag,
    }


def handle_line(line: str, *, seed: int, plan: FailurePlan, sleep_per_event: float = 0.0) -> dict[str, Any]:
    """Process one streaming request line and return the reply; never raises for a bad range."""
    try:
        message = json.loads(line)
    except json.JSONDecodeError as exc:
        log.warning("ignoring a line that is not JSON: %s", exc)
        return failed_reply(None, f"request is not valid JSON: {exc}")
    range_id = _known_range_id(message)
    try:
        request = parse_request(message)
        result = run_range(request, seed=seed, plan=plan, sleep_per_event=sleep_per_event)
    except Exception as exc:
        expected = isinstance(exc, PayloadError)
        log.warning("range %s failed: %s", range_id, exc, exc_info=not expected)
        return failed_reply(range_id, str(exc) if expected else f"{type(exc).__name__}: {exc}")
    return finished_reply(request, result)


def _known_range_id(message: Any) -> str | None:
    """Return a request's ``eventRangeID`` if it has a usable one."""
    if isinstance(message, dict):
        value = message.get("eventRangeID")
        if isinstance(value, str) and value:
            return value
    return None


def run_stream(
    source: TextIO,
    sink: TextIO,
    *,
    seed: int,
    plan: FailurePlan,
    sleep_per_event: float = 0.0,
) -> None:
    """Serve requests from ``source`` until end of input, one flushed JSON reply line each."""
    for line in iter(source.readline, ""):
        if not line.strip():
            continue
        reply = handle_line(line, seed=seed, plan=plan, sleep_per_event=sleep_per_event)
        sink.write(json.dumps(reply) + "\n")
        sink.flush()


def _non_negative_int(text: str) -> int:
    """Argparse type: a non-negative integer."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    """Argparse type: a non-negative number."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _event_list(text: str) -> frozenset[int]:
    """Argparse type: a comma-separated list of event numbers (may be empty)."""
    try:
        return frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text}") from exc


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="python -m hpcpilot.demo.simulate",
        description="Deterministic toy event simulation writing HDF5 (per range or streaming).",
    )
    parser.add_argument("--stream", action="store_true", help="read JSON ranges on stdin")
    parser.add_argument("--range-id", help="event range id (per-range mode)")
    parser.add_argument("--first", type=_non_negative_int, help="first event (per-range mode)")
    parser.add_argument("--last", type=_non_negative_int, help="last event (per-range mode)")
    parser.add_argument("--output", type=Path, help="output HDF5 file (per-range mode)")
    parser.add_argument("--lfn", default="", help="input LFN, recorded in the output")
    parser.add_argument("--seed", type=_non_negative_int, default=DEFAULT_SEED)
    parser.add_argument("--fail-events", type=_event_list, default=frozenset())
    parser.add_argument("--fail-mode", choices=("always", "first"), default="always")
    parser.add_argument("--sleep-per-event", type=_non_negative_float, default=0.0)
    return parser


def _range_request(parser: argparse.ArgumentParser, args: argparse.Namespace) -> RangeRequest:
    """Return the per-range request of the command line (exits on a usage error)."""
    missing = [
        option
        for option, value in (
            ("--range-id", args.range_id),
            ("--first", args.first),
            ("--last", args.last),
            ("--output", args.output),
        )
        if value is None
    ]
    if missing:
        parser.error(f"per-range mode needs {', '.join(missing)} (or use --stream)")
    if args.last < args.first:
        parser.error(f"--last ({args.last}) is before --first ({args.first})")
    return RangeRequest(args.range_id, args.first, args.last, args.output, args.lfn)


def _run_one(request: RangeRequest, args: argparse.Namespace, plan: FailurePlan) -> int:
    """Run per-range mode; return the exit code."""
    try:
        run_range(request, seed=args.seed, plan=plan, sleep_per_event=args.sleep_per_event)
    except InjectedFailureError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return EXIT_INJECTED_FAILURE
    except (PayloadError, OSError) as exc:
        print(f"simulate: range {request.range_id} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the payload; return the process exit code."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s simulate %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    plan = FailurePlan(events=args.fail_events, mode=args.fail_mode)
    if not args.stream:
        return _run_one(_range_request(parser, args), args, plan)
    replies, sys.stdout = sys.stdout, sys.stderr  # stray prints must not corrupt the replies
    try:
        run_stream(sys.stdin, replies, seed=args.seed, plan=plan, sleep_per_event=args.sleep_per_event)
    finally:
        sys.stdout = replies
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
