"""The journal's records: one frozen class per event, the only place their shapes are written down.

Rank 0's coordinator writes these records (`hpcpilot.runtime.journal.Journal.write` and
`Journal.gather`); ``run --resume`` (`hpcpilot.parallel.resume`) and ``hpcpilot status`` /
``report`` (`hpcpilot.monitor.runview`) read them back through the same classes
(`parse_record`, `read_records`). Each class has ``to_json()`` (its plain dict) and
``from_json(raw)`` (its inverse, which checks every field): ``C.from_json(r.to_json()) == r``.

A record that is not one this pilot writes raises `RecordError`, which names where it was read
(file and line), the event and the field. The readers skip such a record with a warning (a torn
last line, all a crash leaves, is skipped silently as before).

The frequent events are *columnar*: one `AssignedRecord` / `FinishedRecord` gathers every range of
one job handed to, or finished by, one rank between two flushes, as aligned columns (``ids``,
``paths``, ``fsize``, ``adler32``, ``nevents``), never one record per range. `RangesRecord` holds
the ranges received as columns too (a file field all share is one string). Shapes written by
earlier versions are still read: a ``ranges`` record listing wire dicts.

The journal writes `compact` dicts, which ``from_json`` reads as well as plain ones: an ``ids``
column whose ids differ in one number (PanDA's ``42-1001-1-7-1``) as a pattern and runs of numbers
(``id_fmt``, ``id_n``), and a finished record's paths, when each is ``<prefix><range id>`` (the
per-range output ``<job dir>/<LFN>.<range id>``), as that prefix once (``path_prefix``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

log = logging.getLogger(__name__)

__all__ = [
    "RECORD_TYPES",
    "AssignedRecord",
    "CollectedRecord",
    "DroppedRecord",
    "EndRecord",
    "ExhaustedRecord",
    "FailedRecord",
    "FatalRecord",
    "FinishedRecord",
    "JobRecord",
    "LostRecord",
    "RangesRecord",
    "Record",
    "RecordError",
    "ReportedRecord",
    "ReturnedRecord",
    "RunRecord",
    "WorkerRecord",
    "compact",
    "parse_record",
    "parse_records",
    "read_records",
]


class RecordError(ValueError):
    """A journal record that is not one this pilot writes.

    Attributes
    ----------
    where
        Where it was read (``journal.jsonl line 12``; "" when not known).
    event
        Its ``ev`` ("" when it has none).
    field
        The field at fault ("" for the record as a whole).
    """

    def __init__(self, where: str, event: str, field_name: str, why: str) -> None:
        self.where, self.event, self.field = where, event, field_name
        place = f"{where}: " if where else ""
        what = f"{event!r} record" if event else "record"
        at = f", field {field_name!r}" if field_name else ""
        super().__init__(f"{place}{what}{at}: {why}")


_MISSING: Any = object()
_T = TypeVar("_T")


class _Fields:
    """Typed reads of one raw record; every failure is a `RecordError` naming the field."""

    def __init__(self, raw: Mapping[str, Any], event: str, where: str) -> None:
        self.raw, self.event, self.where = raw, event, where

    def error(self, name: str, why: str) -> RecordError:
        return RecordError(self.where, self.event, name, why)

    def _get(self, name: str, default: Any) -> Any:
        value = self.raw.get(name, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise self.error(name, "missing")
            return default
        return value

    def integer(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if value is default and default is not _MISSING:
            return value
        if not _is_int(value):
            raise self.error(name, f"must be an integer, got {value!r}"[:200])
        return value

    def opt_int(self, name: str) -> int | None:
        value = self.raw.get(name)
        if value is not None and not _is_int(value):
            raise self.error(name, f"must be an integer or null, got {value!r}"[:200])
        return value

    def number(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"must be a number, got {value!r}"[:200])
        return float(value)

    def text(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, got {value!r}"[:200])
        return value

    def opt_str(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is not None and not isinstance(value, str):
            raise self.error(name, f"must be a string or null, got {value!r}"[:200])
        return value

    def flag(self, name: str, default: Any = _MISSING) -> Any:
        value = self._get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {value!r}"[:200])
        return value

    def ids(self, default: Any = _MISSING) -> tuple[str, ...]:
        """The ``ids`` column, written as a list or compactly (``id_fmt`` and ``id_n``, `compact`)."""
        if "ids" in self.raw or "id_fmt" not in self.raw:
            if "ids" not in self.raw and default is not _MISSING:
                return tuple(default)
            return self.column("ids", _is_str, "a string")
        fmt, numbers = self.text("id_fmt"), self.text("id_n")
        head, sep, tail = fmt.partition("{}")
        if not sep:
            raise self.error("id_fmt", f"has no '{{}}': {fmt!r}"[:200])
        try:
            return tuple(f"{head}{n}{tail}" for n in _numbers(numbers))
        except ValueError:
            raise self.error("id_n", f"is not a list of numbers and runs: {numbers[:100]!r}") from None

    def numbers(self, name: str, n: int) -> tuple[int, ...]:
        """A column of integers, written as a list or as arithmetic runs (`compact`)."""
        value = self.raw.get(name)
        if not isinstance(value, str):
            return tuple(0 if v is None else v for v in self.column(name, _opt_int, "an integer", n))
        try:
            numbers = _steps_from(value)
        except ValueError:
            raise self.error(name, f"is not a list of numbers and runs: {value[:100]!r}") from None
        if len(numbers) != n:
            raise self.error(name, f"has {len(numbers)} entries, 'ids' has {n}")
        return tuple(numbers)

    def checksums(self, name: str, n: int) -> tuple[str | None, ...]:
        """A column of adler32 checksums, written as a list or as one string of 8 hex digits each."""
        value = self.raw.get(name)
        if not isinstance(value, str):
            return self.column(name, _opt_str, "a string or null", n)
        if len(value) != 8 * n or not _HEX.fullmatch(value):
            raise self.error(name, f"is not {n} checksums of 8 hex digits: {value[:100]!r}")
        return tuple(value[k : k + 8] for k in range(0, 8 * n, 8))

    def column(
        self, name: str, check: Callable[[Any], bool], kind: str, n: int | None = None
    ) -> tuple[Any, ...]:
        value = self._get(name, _MISSING)
        if not isinstance(value, list):
            raise self.error(name, f"must be a list, got {type(value).__name__}")
        if n is not None and len(value) != n:
            raise self.error(name, f"has {len(value)} entries, 'ids' has {n}")
        for k, item in enumerate(value):
            if not check(item):
                raise self.error(name, f"entry {k} must be {kind}, got {item!r}"[:200])
        return tuple(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _opt_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def _opt_int(value: object) -> bool:
    return value is None or _is_int(value)


@dataclass(frozen=True, slots=True)
class Record:
    """Base of every journal record: ``t`` is the Unix time it was written (0: stamped on writing)."""

    EVENT: ClassVar[str] = ""
    #: Whether the journal may place it before the collected groups still open when it is written
    #: (its entries happened earlier): only for a record that no earlier collected entry can be
    #: about. Others close the open groups first, so that each range's events stay in order.
    BEFORE_OPEN_GROUPS: ClassVar[bool] = False
    t: float = field(default=0.0, kw_only=True)

    def to_json(self) -> dict[str, Any]:
        """The dict written as one JSON line (``t`` and ``ev`` first)."""
        raise NotImplementedError

    @classmethod
    def parse(cls, f: _Fields) -> Record:
        """The record from typed reads of its raw dict (`from_json` with a place)."""
        raise NotImplementedError

    @classmethod
    def from_json(cls: type[_R], raw: Mapping[str, Any], where: str = "") -> _R:
        """Read a record of this class back from its dict.

        Raises
        ------
        RecordError
            If ``raw`` is not a record of this class (names ``where``, the event and the field).
        """
        event = raw.get("ev")
        if event != cls.EVENT:
            raise RecordError(where, str(event or ""), "ev", f"is not {cls.EVENT!r}")
        record = cls.parse(_Fields(raw, cls.EVENT, where))
        assert isinstance(record, cls)
        return record


_R = TypeVar("_R", bound=Record)


def _head(record: Record, t: float) -> dict[str, Any]:
    return {"t": t, "ev": record.EVENT}


@dataclass(frozen=True, slots=True)
class RunRecord(Record):
    """A run starts (rank 0 of ``hpcpilot run``)."""

    EVENT: ClassVar[str] = "run"
    host: str = ""
    pid: int = 0
    ranks: int = 0
    resume: bool = False

    def to_json(self) -> dict[str, Any]:  # noqa: D102
        return {
            **_head(self, self.t),
            "host": self.host,
            "pid": self.pid,
            "ranks": self.ranks,
            "resume": self.resume,
        }

    @classmethod
    def parse(cls, f: _Fields) -> RunRecord:  # noqa: D102
        return cls(
            f.text("host", ""),
            f.integer("pid", 0),
            f.integer("ranks", 0),
            f.flag("resume", False),
            t=f.number("t"),
        )


@dataclass(frozen=True, slots=True)
class EndRecord(Record):
    """The run ended cleanly; ``drained_by`` names what drained it (None: it ran out of work)."""

    EVENT: ClassVar[str] = "end"
    drained_by: str | None = None

    def to_json(self) -> dict[str, Any]:  # noqa: D102
        return {**_head(self, self.t), "drained_by": self.drained_by}

    @classmethod
    def parse(cls, f: _Fields) -> EndRecord:  # noqa: D102
        return cls(f.opt_str("drained_by"), t=f.number("t"))


@dataclass(frozen=True, slots=True)
class WorkerRecord(Record):
    """A worker rank said hello: its share of the node and how many worker ranks share that node."""

    EVENT: ClassVar[str] = "worker"
    rank: int = 0
    host: str = ""
    cores: int = 0
    gpus: int = 0
    gpu_vendor: str = ""
    gpu_source: str = ""
    peers: int = 1

    def to_json(self) -> dict[str, Any]:  # noqa: D102
        return {
            **_head(self, self.t),
            "rank": self.rank,
            "host": self.host,
            "cores": self.cores,
            "gpus": self.gpus,
            "gpu_vendor": self.gpu_vendor,
            "gpu_source": self.gpu_source,
            "peers": self.peers,
        }

    @classmethod
    def parse(cls, f: _Fields) -> WorkerRecord:  # noqa: D102
        return cls(
            f.integer("rank"),
            f.text("host", ""),
            f.integer("cores", 0),
            f.opt_int("gpus") or 0,
            f.opt_str("gpu_vendor") or "",
            f.opt_str("gpu_source") or "",
            f.opt_int("peers") or 1,
            t=f.number("t"),
        )


@dataclass(frozen=True, slots=True)
class LostRecord(Record):
    """A worker rank died (MPI with fault tolerance); its ranges follow as `FailedRecord` (1200)."""

    EVENT: ClassVar[str] = "lost"
    rank: int = 0
    host: str = ""
    why: str = ""

    def to_json(self) -> dict[str, Any]:  # noqa: D102
        return {**_head(self, self.t), "rank": self.rank, "host": self.host, "why": self.why}

    @classmethod
    def parse(cls, f: _Fields) -> LostRecord:  # noqa: D102
        return cls(f.integer("rank"), f.text("host", ""), f.text("why", ""), t=f.number("t"))


@dataclass(frozen=True, slots=True)
class JobRecord(Record):
    """A job's state: its first record holds its definition (``def``, `hpcpilot.model.job.job_record`).

    Attributes
    ----------
    job
        The PandaID.
    state
        ``starting``, ``running``, ``finished``, ``failed``, ...
    code
        Its error code with a final state (None: not said).
    definition
        The job's definition, in its first record only (None otherwise).
    resumable
        A final state a resumed run may take back (the run ended the job early, its work intact).
    """

    EVENT: ClassVar[str] = "job"
    job: int = 0
    state: str = ""
    code: int | None = None
    definition: Mapping[str, Any] | None = None
    resumable: bool = False

    @property
    def event_service(self) -> bool | None:
        """Whether its definition says event service (None: no definition, or it does not say).

        The one rule every reader uses: the definition's ``event_service`` as `job_record` wrote it.
        """
        value = (self.definition or {}).get("event_service")
        return value if isinstance(value, bool) else None

    def to_json(self) -> dict[str, Any]:  # noqa: D102
        out = {**_head(self, self.t), "job": self.job, "state": self.state}
        if self.definition is not None:
            out["def"] = dict(self.definition)
        else:
            out["code"] = self.code
        if self.resumable:
            out["resumable"] = True
        return out

    @classmethod
    def parse(cls, f: _Fields) -> JobRecord:  # noqa: D102
        definition = f.raw.get("def")
        if definition is not None and not isinstance(definition, dict):
            raise f.error("def", f"must be an object, got {type(definition).__name__}")
        flag = definition.get("event_service") if isinstance(definition, dict) else None
        if flag is not None and not isinstance(flag, bool):
            raise f.error("def", f"'event_service' must be true or false, got {flag!r}")
        return cls(
            f.integer("job"),
            f.text("state", "starting"),
            f.opt_int("code"),
            definition,
            f.raw.get("resumable") is True,
            t=f.number("t"),
        )


@dataclass(frozen=True, slots=True)
class RangesRecord(Record):
    """Ranges received for a job, as columns (`hpcpilot.model.ranges.range_columns`).

    A file field (``LFN``, ``GUID``, ``scope``, ``PFN``) is one string when all ranges share it,
    else a tuple aligned with ``ids``.
    """

    EVENT: ClassVar[str] = "ranges"
    #: New ranges: nothing assigned or finished so far is about them (at batch size 1 a fetch
    #: every few ranges would otherwise close the open groups, a record per range).
    BEFORE_OPEN_GROUPS: ClassVar[bool] = True
    job: int = 0
    ids: tuple[str, ...] = ()
    start: tuple[int, ...] = ()
    last: tuple[int, ...] = ()
    lfn: str | tuple[str, ...] = ""
    guid: str | tuple[str, ...] = ""
    scope: str | tuple[str, ...] = ""
    pfn: str | tuple[str, ...] = ""

    _TEXT: ClassVar[tuple[tuple[str, str], ...]] = (
        ("lfn", "LFN"),
        ("guid", "GUID"),
        ("scope", "scope"),
        ("pfn", "PFN"),
    )

    @classmethod
    def of(cls, job: int, columns: Mapping[str, Any]) -> RangesRecord:
        """The record of `range_columns` output."""
        return cls(
            job,
            tuple(columns["ids"]),
            tuple(columns["start"]),
            tuple(columns["last"]),
            lfn=_frozen(columns.get("LFN", "")),
            guid=_frozen(columns.get("GUID", "")),
            scope=_frozen(columns.get("scope", "")),
            pfn=_frozen(columns.get("PFN", "")),
        )

    def columns(self) -> dict[str, Any]:
        """The `range_columns` dict (for `hpcpilot.model.ranges.ranges_from_columns`)."""
        out: dict[str, Any] = {"ids": list(self.ids), "start": list(self.start), "last": list(self.last)}
        for attr, key in self._TEXT:
            value = getattr(self, attr)
            out[key] = value if isinstance(value, str) else list(value)
        return out

    def to_json(self) -> dict[str, Any]:  # noqa: D102
        return {**_head(self, self.t), "job": self.job, **self.columns()}

    @classmethod
    def parse(cls, f: _Fields) -> RangesRecord:  # noqa: D102
        job, t = f.integer("job"), f.number("t")
        if "ids" not in f.raw and "id_fmt" not in f.raw and isinstance(f.raw.get("ranges"), list):
            return cls._parse_wire(f, job, t)  # an earlier journal: a list of wire dicts
        ids = f.ids()
        n = len(ids)
        start = f.numbers("start", n)
        last = f.numbers("last", n)
        text: dict[str, Any] = {}
        for attr, key in cls._TEXT:
            value = f.raw.get(key, "")
            text[attr] = value if isinstance(value, str) else f.column(key, _is_str, "a string", n)
        return cls(job, ids, start, last, t=t, **text)

    @classmethod
    def _parse_wire(cls, f: _Fields, job: int, t: float) -> RangesRecord:
        wires = f.raw["ranges"]
        columns: dict[str, list[Any]] = {
            k: [] for k in ("ids", "start", "last", "LFN", "GUID", "scope", "PFN")
        }
        for k, wire in enumerate(wires):
            try:
                columns["ids"].append(str(wire["eventRangeID"]))
                columns["start"].append(int(wire["startEvent"]))
                columns["last"].append(int(wire["lastEvent"]))
                for key in ("LFN", "GUID", "scope", "PFN"):
                    columns[key].append(str(wire.get(key) or ""))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise f.error("ranges", f"entry {k} is not a range: {exc!s}"[:200]) from None
        text = {attr: _shared(columns[key]) for attr, key in cls._TEXT}
        return cls(job, tuple(columns["ids"]), tuple(columns["start"]), tuple(columns["last"]), t=t, **text)


def _frozen(value: Any) -> str | tuple[str, ...]:
    return value if isinstance(value, str) else tuple(value)


def _shared(values: list[str]) -> str | tuple[str, ...]:
    first = values[0] if values else ""
    return first if all(v == first for v in values) else tuple(values)


@dataclass(frozen=True, slots=True)
class _JobIds(Record):
    """A job and range ids (``returned``, ``dropped``, ``reported``)."""

    job: int = 0
    ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**_head(self, self.t), "job": self.job, "ids": list(self.ids)}

    @classmethod
    def parse(cls, f: _Fields) -> Record:
        return cls(f.integer("job"), f.ids(()), t=f.number("t"))


@dataclass(frozen=True, slots=True)
class ReturnedRecord(_JobIds):
    """Ranges a worker gave back unstarted (``ids`` empty: a plain job given back)."""

    EVENT: ClassVar[str] = "returned"


@dataclass(frozen=True, slots=True)
class DroppedRecord(_JobIds):
    """Ranges no longer handed out (the job was killed, or its failure is not retried)."""

    EVENT: ClassVar[str] = "dropped"


@dataclass(frozen=True, slots=True)
class ReportedRecord(_JobIds):
    """Range outcomes durable at the communicator."""

    EVENT: ClassVar[str] = "reported"


@dataclass(frozen=True, slots=True)
class ExhaustedRecord(Record):
    """The job gets no more ranges."""

    EVENT: ClassVar[str] = "exhausted"
    job: int = 0

    def to_json(self) -> dict[str, Any]:  # noqa: D102
        return {**_head(self, self.t), "job": self.job}

    @classmethod
    def parse(cls, f: _Fields) -> ExhaustedRecord:  # noqa: D102
        return cls(f.integer("job"), t=f.number("t"))


@dataclass(frozen=True, slots=True)
class FailedRecord(Record):
    """One failed attempt of a range (``code`` None: no code; 1098, no local space, is no attempt)."""

    EVENT: ClassVar[str] = "failed"
    job: int = 0
    id: str = ""
    attempt: int = 0
    code: int | None = None
    diag: str = ""

    def to_json(self) -> dict[str, Any]:  # noqa: D102
        return {
            **_head(self, self.t),
            "job": self.job,
            "id": self.id,
            "attempt": self.attempt,
            "code": self.code,
            "diag": self.diag,
        }

    @classmethod
    def parse(cls, f: _Fields) -> FailedRecord:  # noqa: D102
        return cls(
            f.integer("job"),
            f.text("id"),
            f.integer("attempt", 0),
            f.opt_int("code"),
            f.text("diag", ""),
            t=f.number("t"),
        )


@dataclass(frozen=True, slots=True)
class FatalRecord(Record):
    """A range used all its attempts."""

    EVENT: ClassVar[str] = "fatal"
    job: int = 0
    id: str = ""
    code: int | None = None

    def to_json(self) -> dict[str, Any]:  # noqa: D102
        return {**_head(self, self.t), "job": self.job, "id": self.id, "code": self.code}

    @classmethod
    def parse(cls, f: _Fields) -> FatalRecord:  # noqa: D102
        return cls(f.integer("job"), f.text("id"), f.opt_int("code"), t=f.number("t"))


@dataclass(frozen=True, slots=True)
class CollectedRecord(Record):
    """A record the journal gathers per (event, job, rank) until its flush (`Journal.collect`).

    ``t`` is the time of its first entry, ``t_end`` of its last; ``COLUMNS`` are extended.
    """

    COLUMNS: ClassVar[tuple[str, ...]] = ("ids",)
    job: int = 0
    rank: int = 0
    ids: tuple[str, ...] = ()
    t_end: float = field(default=0.0, kw_only=True)

    def columns(self) -> dict[str, list[Any]]:
        """The columns, as lists (what the journal extends)."""
        return {name: list(getattr(self, name)) for name in self.COLUMNS}

    def to_json(self) -> dict[str, Any]:
        """The dict written as one JSON line."""
        return {
            "t": self.t,
            "t_end": self.t_end,
            "ev": self.EVENT,
            "job": self.job,
            "rank": self.rank,
            **self.columns(),
        }


@dataclass(frozen=True, slots=True)
class AssignedRecord(CollectedRecord):
    """Ranges of a job handed to a rank (``ids`` empty: the job itself, a plain job)."""

    EVENT: ClassVar[str] = "assigned"

    @classmethod
    def parse(cls, f: _Fields) -> AssignedRecord:  # noqa: D102
        t = f.number("t")
        return cls(
            f.integer("job"),
            f.integer("rank", -1),
            f.ids(),
            t=t,
            t_end=f.number("t_end", t),
        )


@dataclass(frozen=True, slots=True)
class FinishedRecord(CollectedRecord):
    """Ranges of a job a rank finished, with their outputs: columns aligned with ``ids``.

    Attributes
    ----------
    paths, fsize, adler32
        Each range's output file (None each: it wrote none). ``paths`` is None when the record does
        not say (a hand-made record): such a record counts, but cannot be resumed from.
    nevents
        Events each range processed.
    """

    EVENT: ClassVar[str] = "finished"
    COLUMNS: ClassVar[tuple[str, ...]] = ("ids", "paths", "fsize", "adler32", "nevents")
    paths: tuple[str | None, ...] | None = None
    fsize: tuple[int | None, ...] = ()
    adler32: tuple[str | None, ...] = ()
    nevents: tuple[int, ...] = ()

    def columns(self) -> dict[str, list[Any]]:  # noqa: D102
        out = {name: list(getattr(self, name)) for name in self.COLUMNS if name != "paths"}
        if self.paths is not None:
            out["paths"] = list(self.paths)
        return out

    @classmethod
    def parse(cls, f: _Fields) -> FinishedRecord:  # noqa: D102
        t = f.number("t")
        ids = f.ids()
        n = len(ids)
        paths: tuple[str | None, ...] | None = None
        if "paths" in f.raw:
            paths = f.column("paths", _opt_str, "a string or null", n)
        elif "path_prefix" in f.raw:
            prefix = f.text("path_prefix")
            paths = tuple(prefix + rid for rid in ids)
        fsize = f.column("fsize", _opt_int, "an integer or null", n) if "fsize" in f.raw else (None,) * n
        adler = f.checksums("adler32", n) if "adler32" in f.raw else (None,) * n
        nevents = f.numbers("nevents", n) if "nevents" in f.raw else (0,) * n
        return cls(
            f.integer("job"),
            f.integer("rank", -1),
            ids,
            paths,
            fsize,
            adler,
            tuple(int(x or 0) for x in nevents),
            t=t,
            t_end=f.number("t_end", t),
        )


def _path_prefix(ids: Sequence[str], paths: Sequence[str | None]) -> str | None:
    """The prefix every output path is ``prefix + id`` of.

    None when there is none (a range without output in the batch, or paths named otherwise: then
    the paths are written whole).
    """
    first, rid = paths[0] if paths else None, ids[0] if ids else ""
    if not isinstance(first, str) or not isinstance(rid, str) or not first.endswith(rid):
        return None
    prefix = first[: len(first) - len(rid)]
    try:
        same = [prefix + r for r in ids] == list(paths)  # one comparison in C, not a loop per path
    except TypeError:
        return None
    return prefix if same else None


def compact(record: dict[str, Any]) -> dict[str, Any]:
    """A record's dict as the journal writes it (`from_json` reads both forms); changes ``record``.

    * A ``finished`` record's paths become one ``path_prefix`` when every path is prefix + id.
    * A ``finished`` record's ``adler32`` column of 8-digit lower-case hex checksums becomes one string,
      the checksums one after the other.
    * The integer columns ``start``, ``last`` (``ranges``) and ``nevents`` (``finished``) become a
      string of runs of equal steps, ``first:step:count``, when they have a run of three or more:
      ``[1, 11, 21, 31]`` -> ``"1:10:4"``.
    * An ``ids`` column of two or more ids that differ only in one number (``42-1001-1-7-1``,
      ``42-1001-1-8-1``: PanDA's and Harvester's range ids) becomes ``id_fmt`` (the id with ``{}``
      for the number) and ``id_n``, the numbers in order with runs of consecutive ones as
      ``first-last``: ``"1-64,66,65"``.
    """
    ids = record.get("ids")
    if not isinstance(ids, list):
        return record
    if record.get("ev") == "finished" and isinstance(record.get("paths"), list):
        prefix = _path_prefix(ids, record["paths"])
        if prefix is not None:
            del record["paths"]
            record["path_prefix"] = prefix
    sums = record.get("adler32")
    if isinstance(sums, list) and len(sums) > 1:
        joined = _hex8_string(sums)
        if joined is not None:
            record["adler32"] = joined
    for name in _STEP_COLUMNS:
        values = record.get(name)
        if isinstance(values, list) and len(values) > 2:
            steps = _steps(values)
            if steps is not None:
                record[name] = steps
    pattern = _id_pattern(ids) if len(ids) > 1 else None
    if pattern is not None:
        fmt, numbers = pattern
        del record["ids"]
        record["id_fmt"] = fmt
        record["id_n"] = _runs(numbers)
    return record


def _id_pattern(ids: Sequence[str]) -> tuple[str, list[int]] | None:
    """``(head{}tail, numbers)`` when every id is head + a number + tail, else None.

    The ids are matched as one text, one per line, so that the check runs in C, not per id in Python;
    the pattern that matched last is tried first (a job's ids all have the same shape).
    """
    first = ids[0]
    if not isinstance(first, str) or "{" in first or "}" in first:
        return None
    try:
        text = "\n".join(ids)
    except TypeError:
        return None
    if text.count("\n") != len(ids) - 1:
        return None  # an id with a line break in it
    fmt, pattern = _LAST_PATTERN[0]
    if pattern is not None:
        found = pattern.findall(text)
        if len(found) == len(ids):
            return fmt, list(map(int, found))
    tokens, last = _DIGITS.split(first), ids[-1]
    for k in range(len(tokens) - 2, 0, -2):  # the digit runs, the last first
        head, tail = "".join(tokens[:k]), "".join(tokens[k + 1 :])
        if not (last.startswith(head) and last.endswith(tail)):
            continue  # the last id says no at once: no pass over them all
        pattern = re.compile(f"^{re.escape(head)}(0|[1-9][0-9]*){re.escape(tail)}$", re.MULTILINE)
        found = pattern.findall(text)
        if len(found) == len(ids):
            fmt = f"{head}{{}}{tail}"
            _LAST_PATTERN[0] = (fmt, pattern)
            return fmt, list(map(int, found))
    return None


#: The id pattern that matched last (a cache: any pattern that matches decodes to the same ids).
_LAST_PATTERN: list[tuple[str, re.Pattern[str] | None]] = [("", None)]


def _runs(numbers: Sequence[int]) -> str:
    """``[1, 2, 3, 7, 6]`` -> ``"1-3,7,6"``."""
    first, n = numbers[0], len(numbers)
    if numbers[-1] == first + n - 1 and list(numbers) == list(range(first, first + n)):
        return f"{first}-{first + n - 1}" if n > 1 else str(first)  # one run: no loop
    parts: list[str] = []
    start = prev = numbers[0]
    for n in numbers[1:]:
        if n == prev + 1:
            prev = n
            continue
        parts.append(f"{start}-{prev}" if prev != start else str(start))
        start = prev = n
    parts.append(f"{start}-{prev}" if prev != start else str(start))
    return ",".join(parts)


def _numbers(text: str) -> list[int]:
    """The inverse of `_runs` (ValueError if ``text`` is not its output)."""
    out: list[int] = []
    for part in text.split(","):
        first, sep, last = part.partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            raise ValueError(part)
        a = int(first)
        b = int(last) if sep else a
        if b < a or b - a > _MAX_RUN:
            raise ValueError(part)
        out.extend(range(a, b + 1))
    return out


def _steps(values: Sequence[object]) -> str | None:
    """Integers as runs of equal steps, ``first:step:count`` (a lone one as itself), comma-separated.

    ``[1, 11, 21, 31, 7]`` -> ``"1:10:4,7"``; None when there is no run of three or more (or a value
    that is no integer).
    """
    if set(map(type, values)) != {int}:
        return None  # None, bool or anything else: as it is
    ints: Sequence[int] = values  # type: ignore[assignment]
    n, step = len(ints), ints[1] - ints[0]
    if list(ints) == list(range(ints[0], ints[0] + step * n, step) if step else [ints[0]] * n):
        return f"{ints[0]}:{step}:{n}"  # one run: no loop
    parts: list[str] = []
    i, n, runs = 0, len(ints), False
    while i < n:
        j = i + 1
        if j < n:
            step = ints[j] - ints[i]
            while j + 1 < n and ints[j + 1] - ints[j] == step:
                j += 1
            if j - i >= 2:
                parts.append(f"{ints[i]}:{step}:{j - i + 1}")
                i, runs = j + 1, True
                continue
        parts.append(str(ints[i]))
        i += 1
    return ",".join(parts) if runs else None


def _steps_from(text: str) -> list[int]:
    """The inverse of `_steps` (ValueError if ``text`` is not its output)."""
    out: list[int] = []
    for part in text.split(","):
        fields = [int(x) for x in part.split(":")]
        if len(fields) == 1:
            out.append(fields[0])
        elif len(fields) == 3 and 0 < fields[2] <= _MAX_RUN:
            first, step, count = fields
            out.extend(range(first, first + step * count, step) if step else [first] * count)
        else:
            raise ValueError(part)
    return out


#: Integer columns written as runs of equal steps where they have them (`_steps`).
_STEP_COLUMNS = ("start", "last", "nevents")
_DIGITS = re.compile(r"(\d+)")
_HEX = re.compile(r"[0-9a-f]*")


def _hex8_string(values: Sequence[object]) -> str | None:
    """The values one after the other if each is 8 lower-case hex digits, else None."""
    try:
        if set(map(len, values)) != {8}:  # type: ignore[arg-type]
            return None
        joined = "".join(values)  # type: ignore[arg-type]
    except TypeError:  # None, or no string
        return None
    return joined if _HEX.fullmatch(joined) else None


_MAX_RUN = 10_000_000  # a longer run of ids in one record is no journal this pilot wrote


#: Every record class by its event name.
RECORD_TYPES: Mapping[str, type[Record]] = {
    cls.EVENT: cls
    for cls in (
        RunRecord,
        EndRecord,
        WorkerRecord,
        LostRecord,
        JobRecord,
        RangesRecord,
        ExhaustedRecord,
        AssignedRecord,
        FinishedRecord,
        FailedRecord,
        FatalRecord,
        ReturnedRecord,
        DroppedRecord,
        ReportedRecord,
    )
}


def parse_record(raw: Mapping[str, Any] | Record, where: str = "") -> Record:
    """The typed record of a raw journal dict, by its ``ev`` (a `Record` is returned as it is).

    Raises
    ------
    RecordError
        If ``raw`` is not a record this pilot writes (an unknown event, a missing or mistyped field):
        names ``where``, the event and the field.
    """
    if isinstance(raw, Record):
        return raw
    if not isinstance(raw, Mapping):
        raise RecordError(where, "", "", f"not an object: {type(raw).__name__}")
    event = raw.get("ev")
    cls = RECORD_TYPES.get(event) if isinstance(event, str) else None
    if cls is None:
        raise RecordError(where, str(event or ""), "ev", "not an event this pilot writes")
    return cls.from_json(raw, where)


def parse_records(
    raws: Iterable[Mapping[str, Any] | Record],
    problems: list[str] | None = None,
    source: str = "record",
) -> Iterator[Record]:
    """Typed records of raw dicts; a bad one is skipped, with a warning or added to ``problems``."""
    for n, raw in enumerate(raws, 1):
        try:
            yield parse_record(raw, f"{source} {n}")
        except RecordError as exc:
            _skip(exc, problems)


def read_records(path: Path, problems: list[str] | None = None) -> Iterator[Record]:
    """Yield a journal's records in order, typed.

    A torn or garbled line (what a crash mid-write leaves) is skipped, as `read_journal` does; a
    line that is JSON but not a record this pilot writes is skipped, and the `RecordError` naming the
    file, the line and the field is logged as a warning (added to ``problems`` instead, when given).
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for n, line in enumerate(handle, 1):
            try:
                raw = json.loads(line)
            except ValueError:
                continue
            if not isinstance(raw, dict) or "ev" not in raw:
                continue
            try:
                yield parse_record(raw, f"{path} line {n}")
            except RecordError as exc:
                _skip(exc, problems)


def _skip(exc: RecordError, problems: list[str] | None) -> None:
    if problems is None:
        log.warning("skipped a journal record: %s", exc)
    else:
        problems.append(str(exc))
