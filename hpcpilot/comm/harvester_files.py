"""Harvester's shared-file protocol: file names, and the content of each file. Pure: no I/O.

The names come from Harvester's own configuration (``panda_harvester.cfg``, section
``[payload_interaction]``) when the pilot is given it, else the usual values (PROTOCOLS.md §1).
Builders return what the pilot writes (dicts ready for JSON); parsers turn what Harvester writes into
typed values, raising `CommunicatorError` naming the file and the field.
"""

from __future__ import annotations

import configparser
import dataclasses
import enum
import json
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcpilot.comm.base import JobReport
from hpcpilot.comm.panda_api import METRIC_PARAMS
from hpcpilot.comm.wire import parse_json_object
from hpcpilot.config.schema import EventServiceSettings, HarvesterSettings, Settings
from hpcpilot.model.bounds import fit_words
from hpcpilot.model.errors import CommunicatorError
from hpcpilot.model.job import Job
from hpcpilot.model.results import OutputFile, RangeResult

#: Harvester's time format for ``startTime`` / ``endTime`` (UTC), as the PanDA server takes them.
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True, slots=True)
class HarvesterFiles:
    """The protocol's file names (Harvester's ``[payload_interaction]`` keys).

    Attributes
    ----------
    jobSpecFile, pandaIDsFile, xmlPoolCatalogFile, jobRequestFile, workerAttributesFile
        One file name each, as in PROTOCOLS.md §1.
    jobReportFile, eventStatusDumpJsonFile, eventRequestFile, eventRangesFile, updateEventsFile
        Likewise.
    killWorkerFile, heartbeatFile
        Likewise.
    """

    jobSpecFile: str = "HPCJobs.json"  # noqa: N815 - Harvester's key names
    pandaIDsFile: str = "worker_pandaids.json"  # noqa: N815
    xmlPoolCatalogFile: str = "PoolFileCatalog_H.xml"  # noqa: N815
    jobRequestFile: str = "worker_requestjob.json"  # noqa: N815
    workerAttributesFile: str = "worker_attributes.json"  # noqa: N815
    jobReportFile: str = "jobReport.json"  # noqa: N815
    eventStatusDumpJsonFile: str = "event_status.dump.json"  # noqa: N815
    eventRequestFile: str = "worker_requestevents.json"  # noqa: N815
    eventRangesFile: str = "JobsEventRanges.json"  # noqa: N815
    updateEventsFile: str = "worker_updateevents.json"  # noqa: N815
    killWorkerFile: str = "kill_worker.json"  # noqa: N815
    heartbeatFile: str = "worker_heartbeat.json"  # noqa: N815


class MappingType(enum.StrEnum):
    """How jobs map to a worker: Harvester's ``mapType`` (HSF/harvester ``work_spec.py``)."""

    ONE_TO_ONE = "OneToOne"  #: one job, one worker
    ONE_TO_MANY = "OneToMany"  #: one job over several workers (``MT_MultiWorkers``)
    MANY_TO_ONE = "ManyToOne"  #: several jobs in one worker (``MT_MultiJobs``)


def report_dir(access_point: Path, panda_id: int, mapping: MappingType) -> Path:
    """Where Harvester's messenger reads one job's reports; every per-job report goes there.

    The worker attributes (the job's status, final ones included), the job report and the event
    status dump are read by ``SharedFileMessenger.get_work_attributes`` / ``get_files_to_stage_out``
    from ``get_access_point(workspec, PandaID)`` (HSF/harvester
    ``pandaharvester/harvestermessenger/shared_file_messenger.py``): ``<accessPoint>/<PandaID>/`` for a
    ``ManyToOne`` (``MT_MultiJobs``) worker, the access point itself for the others. A report written
    anywhere else is never read: Harvester would see no status at all.
    """
    return access_point / str(panda_id) if mapping is MappingType.MANY_TO_ONE else access_point


def infer_mapping(*, spec_in_own_dir: bool | None, listed: int, own_dir_exists: bool) -> MappingType:
    """The mapping type of a worker, as its access point shows it (``harvester.mapping_type=auto``).

    Harvester's ``feed_jobs`` writes each job's spec into the job's messenger access point, which
    ``setup_access_points`` (or ``feed_jobs`` itself) creates as ``<accessPoint>/<PandaID>/`` for a
    ``ManyToOne`` worker.

    Parameters
    ----------
    spec_in_own_dir
        Where the job's spec was read: True in ``<accessPoint>/<PandaID>/``, False at the top (one job;
        a top-level spec with several jobs counts as in their own directories), None not read.
    listed
        How many PandaIDs the PandaIDs file listed with the job (0 if it came without a listing).
    own_dir_exists
        Whether ``<accessPoint>/<PandaID>/`` existed when a job without a spec was looked for.
    """
    if spec_in_own_dir is not None:
        return MappingType.MANY_TO_ONE if spec_in_own_dir else MappingType.ONE_TO_ONE
    if listed > 1 or own_dir_exists:
        return MappingType.MANY_TO_ONE
    return MappingType.ONE_TO_ONE


#: Settings that only matter when the worker runs event-service jobs (one changed: ES is expected).
_RANGE_SETTINGS = ("request_threshold", "request_ranges", "pack_ranges")

#: Why an event-service job gets nothing in a ManyToOne worker (docs/communicators/harvester.md).
NO_FEED_FOR_MANY_TO_ONE = (
    "Harvester feeds no event ranges to a ManyToOne worker (its SharedFileMessenger.feed_events writes "
    "nothing for multi-job workers and deletes the request): event-service jobs there get no ranges"
)


def mapping_warnings(settings: Settings) -> list[str]:
    """Warnings about the ``harvester`` settings: ManyToOne where event service is expected.

    Event service is expected when ``eventservice.mode`` names a payload mode or a setting that only
    matters for ranges (``harvester.request_threshold``, ``request_ranges``, ``pack_ranges``) is set.
    """
    cfg, usual = settings.harvester, HarvesterSettings()
    if cfg.mapping_type != MappingType.MANY_TO_ONE.value:
        return []
    why = [f"harvester.{k}" for k in _RANGE_SETTINGS if getattr(cfg, k) != getattr(usual, k)]
    if settings.eventservice.mode != EventServiceSettings().mode:
        why.insert(0, "eventservice.mode")
    if not why:
        return []
    return [
        f"harvester.mapping_type is ManyToOne and event service is expected ({', '.join(why)} set): "
        f"{NO_FEED_FOR_MANY_TO_ONE}"
    ]


def parse_harvester_config(text: str, *, source: str) -> tuple[HarvesterFiles, list[str]]:
    """Read the file names from a Harvester configuration file's ``[payload_interaction]`` section.

    Keys the section does not set keep their usual names; keys the pilot does not use are ignored.

    Returns
    -------
    tuple
        The names, and notes for the log (a missing section, names that are not plain file names).

    Raises
    ------
    CommunicatorError
        If the file is not in INI syntax.
    """
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep Harvester's camelCase
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        raise CommunicatorError(
            f"Harvester configuration is not valid: {exc}", context={"source": source}
        ) from None
    notes: list[str] = []
    if not parser.has_section("payload_interaction"):
        notes.append(f"{source} has no [payload_interaction] section: using the usual file names")
        return HarvesterFiles(), notes
    section = parser["payload_interaction"]
    names: dict[str, str] = {}
    for item in dataclasses.fields(HarvesterFiles):
        value = section.get(item.name)
        if value is None:
            continue
        value = value.strip()
        if not value or "/" in value or value in {".", ".."}:
            raise CommunicatorError(
                f"[payload_interaction] {item.name} must be a plain file name, got {value!r}",
                context={"source": source, "field": item.name},
            )
        names[item.name] = value
    return HarvesterFiles(**names), notes


# --------------------------------------------------------------------------- what Harvester writes


def parse_job_spec(text: str, *, fmt: str, source: str) -> dict[str, Any]:
    """The jobs of a job spec file: ``{"<PandaID>": {job dict}}``.

    ``fmt`` is ``json`` (a dict keyed by PandaID) or ``cgi`` (one urlencoded job dict).

    Raises
    ------
    CommunicatorError
        If the file cannot be parsed (it may be half written: the caller retries).
    """
    if fmt == "cgi":
        pairs = urllib.parse.parse_qsl(text.strip(), keep_blank_values=True, strict_parsing=False)
        job = dict(pairs)
        panda_id = job.get("PandaID")
        if not panda_id:
            raise CommunicatorError(
                "urlencoded job spec has no PandaID", context={"source": source, "field": "PandaID"}
            )
        return {panda_id: job}
    return parse_json_object(text, source=source)


def parse_panda_ids(text: str, *, source: str) -> list[int]:
    """The PandaIDs listed in ``worker_pandaids.json``.

    Raises
    ------
    CommunicatorError
        If it is not a JSON list of integers.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommunicatorError(f"not valid JSON: {exc.msg}", context={"source": source}) from None
    if not isinstance(data, list):
        raise CommunicatorError(
            f"must hold a JSON list of PandaIDs, got {type(data).__name__}", context={"source": source}
        )
    ids: list[int] = []
    for item in data:
        try:
            ids.append(int(item))
        except (TypeError, ValueError):
            raise CommunicatorError(
                f"PandaID {item!r} is not an integer", context={"source": source, "field": "PandaIDs"}
            ) from None
    return ids


def parse_kill_file(text: str, *, source: str) -> tuple[int, ...] | None:
    """The jobs an operator's kill file names: None for the whole run (empty or no ``PandaIDs``).

    Raises
    ------
    CommunicatorError
        If ``PandaIDs`` is present but not a list of integers.
    """
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or "PandaIDs" not in data:
        return None
    ids = data["PandaIDs"]
    if not isinstance(ids, list) or not all(isinstance(i, int | str) and str(i).isdigit() for i in ids):
        raise CommunicatorError(
            f"'PandaIDs' must be a list of PandaIDs, got {ids!r}",
            context={"source": source, "field": "PandaIDs"},
        )
    return tuple(int(i) for i in ids)


# --------------------------------------------------------------------------- what the pilot writes


def event_request(job: Job, n_ranges: int) -> dict[str, Any]:
    """One job's entry of ``worker_requestevents.json``."""
    return {
        "pandaID": job.panda_id,
        "taskID": job.task_id,
        "jobsetID": job.jobset_id,
        "nRanges": n_ranges,
    }


def es_output_entry(
    result: RangeResult, output: OutputFile, guid: str, *, zip_path: str = ""
) -> dict[str, Any]:
    """A range's output in ``event_status.dump.json``: ``es_output``, or ``zip_output`` when packed."""
    if zip_path:
        return {
            "path": zip_path,
            "type": "zip_output",
            "fsize": output.fsize,
            "chksum": output.adler32,
            "guid": guid,
            "eventRangeID": result.range_id,
            "eventStatus": "finished",
            "isZip": 1,
        }
    return {
        "path": output.path,
        "type": "es_output",
        "fsize": output.fsize,
        "chksum": output.adler32,
        "guid": guid,
        "eventRangeID": result.range_id,
        "eventStatus": "finished",
        "isZip": 0,
    }


def status_entry(range_id: str, status: str) -> dict[str, Any]:
    """A pure status update in ``event_status.dump.json`` (a range without an output)."""
    return {"eventRangeID": range_id, "eventStatus": status}


def file_entry(kind: str, path: str, fsize: object, adler32: object, guid: str) -> dict[str, Any]:
    """A job-level file (``output``, ``log``) in ``event_status.dump.json``."""
    return {"path": path, "type": kind, "fsize": fsize, "chksum": adler32, "guid": guid, "isZip": 0}


def _time(value: float) -> str | None:
    return time.strftime(TIME_FORMAT, time.gmtime(value)) if value else None


def worker_attributes(report: JobReport, job: Job | None, batch_id: str) -> dict[str, Any]:
    """The flat dict of ``worker_attributes.json`` for one job (fields of PROTOCOLS.md §1)."""
    attrs: dict[str, Any] = {
        "jobStatus": report.state.value,
        "transExitCode": report.exit_code if report.exit_code is not None else 0,
        "pilotErrorCode": report.error_code or 0,
        "pilotErrorDiag": report.error_diag[:250],
        "exeErrorCode": 0,
        "exeErrorDiag": "",
        "node": report.host,
        "cpuConsumptionTime": round(report.cpu_s),
        "cpuConsumptionUnit": "s",
        "cpuConversionFactor": 1.0,
        "coreCount": report.core_count,
        "nEvents": report.n_events,
    }
    start, end = _time(report.start_time), _time(report.end_time) if report.state.is_final else None
    if start:
        attrs["startTime"] = start
    if end:
        attrs["endTime"] = end
    if job is not None:
        attrs["attemptNr"] = job.attempt_nr
        attrs["nInputFiles"] = len(job.input_files)
    if batch_id:
        attrs["batchID"] = batch_id
    # the range counts first; the whole words that fit in what PanDA keeps (Harvester passes it on)
    words = [f"{k}={v}" for k, v in report.ranges.items()] + report.job_metrics.split()
    if words:
        attrs["jobMetrics"] = fit_words(words)
    attrs.update((k, v) for k, v in report.metrics.items() if k in METRIC_PARAMS)  # PanDA's names only
    return attrs


def dump_text(by_job: Mapping[str, list[str]]) -> str:
    """``event_status.dump.json`` from entries already serialised (one JSON object string each)."""
    parts = [f"{json.dumps(key)}: [{', '.join(entries)}]" for key, entries in by_job.items()]
    return "{" + ", ".join(parts) + "}\n"
