"""The PanDA job dict, parsed into typed, frozen objects.

The server (and Harvester, which passes it on unchanged) sends a flat dict of strings. Per-file facts come
as aligned comma-separated lists (``inFiles``/``GUID``/``fsize``/``checksum``/...), which may hold ``NULL``
entries. `parse_job` turns such a dict into a `Job`, or raises a
`hpcpilot.model.errors.JobDefinitionError` that names the source, the job and the field. Every field
that becomes a path, a file name or a command argument (file names, GUIDs, scopes, datasets, endpoints)
is checked against its naming rule (`hpcpilot.model.naming.JOB_FIELD_RULES`).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpcpilot.model.bounds import JOB_FIELDS
from hpcpilot.model.errors import JobDefinitionError
from hpcpilot.model.naming import FILE_NAME, JOB_FIELD_RULES

NULL_VALUES = frozenset({"", "NULL", "None", "null"})


class ChecksumAlgorithm(enum.Enum):
    """A checksum algorithm PanDA knows, with its prefix on the wire (``ad:``, ``md5:``)."""

    ADLER32 = "ad"
    MD5 = "md5"


@dataclass(frozen=True, slots=True)
class Checksum:
    """A file checksum: algorithm and lower-case hex value.

    Attributes
    ----------
    algorithm
        Which algorithm made the value.
    value
        Lower-case hex digest (8 digits for adler32, 32 for md5).
    """

    algorithm: ChecksumAlgorithm
    value: str

    @classmethod
    def parse(cls, text: str) -> Checksum:
        """Parse ``ad:<hex>``, ``md5:<hex>``, or a bare 8-digit hex value (adler32).

        Raises
        ------
        ValueError
            If the text is neither form.
        """
        prefix, sep, rest = text.strip().partition(":")
        if not sep:
            prefix, rest = "ad", prefix
        try:
            algorithm = ChecksumAlgorithm(prefix.lower())
        except ValueError:
            raise ValueError(f"unknown checksum algorithm {prefix!r} in {text!r}") from None
        width = 8 if algorithm is ChecksumAlgorithm.ADLER32 else 32
        value = rest.lower()
        if not re.fullmatch(r"[0-9a-f]+", value) or len(value) > width:
            raise ValueError(f"{text!r} is not a valid {algorithm.name.lower()} checksum")
        return cls(algorithm, value.zfill(width))

    def __str__(self) -> str:
        return f"{self.algorithm.value}:{self.value}"


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One input or output file of a job, as the aligned per-file lists describe it.

    Attributes
    ----------
    lfn
        Logical file name (a plain file name, never a path).
    guid
        The file's GUID, when the job gives one.
    fsize
        Size in bytes, when known.
    checksum
        Expected checksum, when known.
    scope
        Rucio scope.
    dataset
        The dataset the file belongs to.
    ddm_endpoint
        The storage endpoint (RSE).
    """

    lfn: str
    guid: str | None = None
    fsize: int | None = None
    checksum: Checksum | None = None
    scope: str | None = None
    dataset: str | None = None
    ddm_endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """A PanDA job, typed.

    Attributes
    ----------
    panda_id
        ``PandaID``.
    task_id
        ``taskID`` (``jediTaskID``), 0 when absent.
    jobset_id
        ``jobsetID``, 0 when absent.
    attempt_nr
        ``attemptNr``.
    transformation
        The executable (``transformation``).
    job_pars
        Its parameters (``jobPars``), raw: possibly base64 when the task asks for it.
    core_count
        Cores one payload of this job uses (``coreCount``, at least 1).
    event_service
        Whether the job is an event-service job (``eventService``).
    input_files
        Inputs, from ``inFiles`` and the lists aligned with it.
    output_files
        Outputs from ``outFiles`` without the log.
    log_file
        The log tarball (``logFile``), if any.
    n_events_per_input_file
        ``nEventsPerInputFile`` when given: how many events each input holds.
    """

    panda_id: int
    task_id: int = 0
    jobset_id: int = 0
    attempt_nr: int = 0
    transformation: str = ""
    job_pars: str = ""
    core_count: int = 1
    event_service: bool = False
    prod_source_label: str = ""
    home_package: str = ""
    sw_release: str = ""
    cmt_config: str = ""
    container_name: str = ""
    min_ram_mb: int | None = None
    max_disk_mb: int | None = None
    max_cpu_s: int | None = None
    max_walltime_s: int | None = None
    input_files: tuple[FileSpec, ...] = ()
    output_files: tuple[FileSpec, ...] = ()
    log_file: FileSpec | None = None
    destination_se: str = ""
    n_events_per_input_file: int | None = None

    @property
    def main_output(self) -> FileSpec | None:
        """The first output file, or None if the job declares no output besides its log."""
        return self.output_files[0] if self.output_files else None


def parse_job(raw: Mapping[str, Any], *, source: str) -> Job:
    """Parse one PanDA job dict.

    Parameters
    ----------
    raw
        The job dict as the server or Harvester sends it.
    source
        Where it came from (a file path, a URL): named in every error.

    Returns
    -------
    Job
        The typed job.

    Raises
    ------
    JobDefinitionError
        If a field is missing, has the wrong type, breaks its naming rule
        (`hpcpilot.model.naming.JOB_FIELD_RULES`), or lists are not aligned; the message names
        ``source``, the PandaID (when readable) and the field.
    """
    if not isinstance(raw, Mapping):
        raise JobDefinitionError(
            f"job definition is a {type(raw).__name__}, not a dict", context={"source": source}
        )
    reader = _FieldReader(raw, source)
    panda_id = reader.integer("PandaID", required=True)
    assert panda_id is not None
    reader.panda_id = panda_id
    inputs = _input_files(reader)
    outputs, log_file = _output_files(reader)
    reader.named_list("destinationDBlock", None)  # not used, but a dataset name: checked as one
    return Job(
        panda_id=panda_id,
        task_id=reader.integer("taskID") or reader.integer("jediTaskID") or 0,
        jobset_id=reader.integer("jobsetID") or 0,
        attempt_nr=reader.integer("attemptNr") or 0,
        transformation=reader.text("transformation"),
        job_pars=reader.text("jobPars"),
        core_count=reader.integer("coreCount") or 1,
        event_service=reader.boolean("eventService"),
        prod_source_label=reader.text("prodSourceLabel"),
        home_package=reader.text("homepackage"),
        sw_release=reader.text("swRelease"),
        cmt_config=reader.text("cmtConfig"),
        container_name=reader.text("container_name"),
        min_ram_mb=reader.integer("minRamCount"),
        max_disk_mb=reader.integer("maxDiskCount"),
        max_cpu_s=reader.integer("maxCpuCount"),
        max_walltime_s=reader.integer("maxWalltime"),
        input_files=inputs,
        output_files=outputs,
        log_file=log_file,
        destination_se=reader.named("destinationSE"),
        n_events_per_input_file=reader.integer("nEventsPerInputFile"),
    )


def is_null(value: object) -> bool:
    """Whether a wire value means "nothing" (``None``, ``""``, ``"NULL"``, ...)."""
    return value is None or (isinstance(value, str) and value.strip() in NULL_VALUES)


def check_file_name(name: str, *, what: str) -> str:
    """Return ``name`` if it is a safe plain file name, else raise ValueError.

    A file name from a job must not be a path (no ``/``), must not be ``.`` or ``..`` and may hold only
    the characters real LFNs use, so that it can neither escape the job directory nor reach a shell
    (`hpcpilot.model.naming.FILE_NAME`).
    """
    return FILE_NAME.check(name, what)


class _FieldReader:
    """Reads typed fields out of a job dict, raising errors that name the field."""

    def __init__(self, raw: Mapping[str, Any], source: str) -> None:
        self.raw = raw
        self.source = source
        self.panda_id: int | None = None

    def error(self, key: str, problem: str) -> JobDefinitionError:
        context: dict[str, Any] = {"source": self.source, "field": key}
        if self.panda_id is not None:
            context["PandaID"] = self.panda_id
        return JobDefinitionError(f"job field {key!r} {problem}", context=context)

    def text(self, key: str) -> str:
        value = self.raw.get(key)
        if is_null(value):
            return ""
        if not isinstance(value, str | int | float):
            raise self.error(key, f"must be a string, got {type(value).__name__}")
        return str(value)

    def integer(self, key: str, *, required: bool = False) -> int | None:
        """The integer field ``key`` within its bound (`hpcpilot.model.bounds.JOB_FIELDS`), or None."""
        value = self.raw.get(key)
        if is_null(value):
            if required:
                raise self.error(key, "is missing")
            return None
        try:
            number = _to_int(value)
        except ValueError:
            raise self.error(key, f"must be an integer, got {_shown(value)}") from None
        problem = JOB_FIELDS[key].problem(number)
        if problem is not None:
            raise self.error(key, problem)
        return number

    def checked(self, key: str, value: str, *, entry: bool = True) -> str:
        """``value`` if it keeps the naming rule of field ``key``, else the error naming the field.

        ``entry`` says whether the value is an entry of the field's list (the message says which).
        """
        rule = JOB_FIELD_RULES[key]
        problem = rule.problem(value)
        if problem is not None:
            what = "entry " if entry else ""
            raise self.error(key, f"{what}{value!r} is not a {rule.name}: {problem}")
        return value

    def named(self, key: str) -> str:
        """A text field checked against its naming rule (empty when absent)."""
        value = self.text(key)
        return self.checked(key, value, entry=False) if value else value

    def named_list(self, key: str, length: int | None) -> list[str | None]:
        """An aligned list whose entries are checked against the field's naming rule."""
        items = self.file_list(key, length)
        for item in items:
            if item is not None:
                self.checked(key, item)
        return items

    def boolean(self, key: str) -> bool:
        value = self.raw.get(key)
        if is_null(value):
            return False
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"true", "1", "yes"}:
            return True
        if text in {"false", "0", "no"}:
            return False
        raise self.error(key, f"must be True or False, got {value!r}")

    def file_list(self, key: str, length: int | None) -> list[str | None]:
        value = self.raw.get(key)
        if is_null(value):
            return [None] * (length or 0)
        if not isinstance(value, str):
            raise self.error(key, f"must be a comma-separated string, got {type(value).__name__}")
        items: list[str | None] = [None if is_null(v) else v.strip() for v in value.split(",")]
        if length is not None and len(items) != length:
            raise self.error(key, f"has {len(items)} entries but the aligned list has {length}")
        return items


def _to_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError(value)


def _input_files(reader: _FieldReader) -> tuple[FileSpec, ...]:
    lfns = reader.file_list("inFiles", None)
    n = len(lfns)
    guids = reader.named_list("GUID", n)
    sizes = reader.file_list("fsize", n)
    checksums = reader.file_list("checksum", n)
    scopes = reader.named_list("scopeIn", n)
    datasets = reader.named_list("realDatasetsIn", n)
    endpoints = reader.named_list("ddmEndPointIn", n)
    specs = []
    for i, lfn in enumerate(lfns):
        if lfn is None:
            continue
        specs.append(
            FileSpec(
                lfn=reader.checked("inFiles", lfn),
                guid=guids[i],
                fsize=_list_int(reader, "fsize", sizes[i]),
                checksum=_list_checksum(reader, "checksum", checksums[i]),
                scope=scopes[i],
                dataset=datasets[i],
                ddm_endpoint=endpoints[i],
            )
        )
    return tuple(specs)


def _output_files(reader: _FieldReader) -> tuple[tuple[FileSpec, ...], FileSpec | None]:
    lfns = reader.file_list("outFiles", None)
    n = len(lfns)
    scopes = reader.named_list("scopeOut", n)
    datasets = reader.named_list("realDatasets", n)
    endpoints = reader.named_list("ddmEndPointOut", n)
    log_name = reader.text("logFile")
    log_guid = reader.named("logGUID") or None
    log_scope = reader.named("scopeLog") or None
    outputs = []
    log_spec: FileSpec | None = None
    for i, lfn in enumerate(lfns):
        if lfn is None:
            continue
        spec = FileSpec(
            lfn=reader.checked("outFiles", lfn),
            scope=scopes[i],
            dataset=datasets[i],
            ddm_endpoint=endpoints[i],
        )
        if lfn == log_name:
            log_spec = FileSpec(
                lfn=spec.lfn,
                guid=log_guid,
                scope=log_scope or spec.scope,
                dataset=spec.dataset,
                ddm_endpoint=spec.ddm_endpoint,
            )
        else:
            outputs.append(spec)
    if log_name and log_spec is None:
        log_spec = FileSpec(
            lfn=reader.checked("logFile", log_name),
            guid=log_guid,
            scope=log_scope,
        )
    return tuple(outputs), log_spec


def _list_int(reader: _FieldReader, key: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise reader.error(key, f"entry {_shown(value)} is not an integer") from None
    problem = JOB_FIELDS[key].problem(number)
    if problem is not None:
        raise reader.error(key, f"entry {problem}")
    return number


def _shown(value: object) -> str:
    """``value`` for an error message, cut short (a job field may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _list_checksum(reader: _FieldReader, key: str, value: str | None) -> Checksum | None:
    if value is None:
        return None
    try:
        return Checksum.parse(value)
    except ValueError as exc:
        raise reader.error(key, str(exc)) from None


def job_record(job: Job) -> dict[str, Any]:
    """A JSON-able dict of every field of ``job`` (the journal's ``def``); `job_from_record` inverts it."""
    record: dict[str, Any] = {}
    for name in Job.__dataclass_fields__:
        value = getattr(job, name)
        if name in ("input_files", "output_files"):
            value = [_spec_record(s) for s in value]
        elif name == "log_file":
            value = None if value is None else _spec_record(value)
        record[name] = value
    return record


def job_from_record(record: Mapping[str, Any]) -> Job:
    """The `Job` that `job_record` turned into ``record`` (an exact round trip).

    Raises
    ------
    JobDefinitionError
        If the record is not one `job_record` wrote.
    """
    try:
        fields = dict(record)
        fields["input_files"] = tuple(_spec_from(s) for s in fields.get("input_files", ()))
        fields["output_files"] = tuple(_spec_from(s) for s in fields.get("output_files", ()))
        log_spec = fields.get("log_file")
        fields["log_file"] = None if log_spec is None else _spec_from(log_spec)
        for name, value in fields.items():
            _check_record_type(name, value)
        return Job(**fields)
    except (TypeError, ValueError, AttributeError) as exc:
        raise JobDefinitionError(f"not a journaled job definition: {exc}") from None


def _check_record_type(name: str, value: object) -> None:
    """Raise TypeError unless ``value`` has the type of the `Job` field ``name`` (by its default)."""
    spec = Job.__dataclass_fields__.get(name)
    if spec is None or name in ("input_files", "output_files", "log_file"):
        return  # unknown names fail in Job(); the file lists were rebuilt above
    default = spec.default
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:  # an int, an optional int, or the required PandaID
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (default is None and value is None)
    if not ok:
        raise TypeError(f"field {name!r} is {value!r}")


def _spec_record(spec: FileSpec) -> dict[str, Any]:
    record: dict[str, Any] = {name: getattr(spec, name) for name in FileSpec.__dataclass_fields__}
    record["checksum"] = None if spec.checksum is None else str(spec.checksum)
    return record


def _spec_from(record: Mapping[str, Any]) -> FileSpec:
    fields = dict(record)
    checksum = fields.get("checksum")
    fields["checksum"] = None if checksum is None else Checksum.parse(checksum)
    return FileSpec(**fields)
