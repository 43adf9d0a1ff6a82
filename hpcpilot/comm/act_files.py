"""The ARC Control Tower's files in a job's session directory: names and content. Pure: no I/O.

aCT puts the PanDA job into the ARC job's session directory as ``pandaJobData.out`` (urlencoded, as
the PanDA server's ``getJob`` answers, or JSON); the pilot runs it without any network and leaves,
in the same directory:

* ``heartbeat.json``: the PanDA ``updateJob`` data, as Pilot 3 writes it when it must not update the
  server (PanDAWMS/pilot3 ``pilot/control/job.py``: ``get_data_structure`` and
  ``write_heartbeat_to_file``). aCT downloads it, and its validator (ARCControlTower/aCT
  ``src/act/atlas/aCTValidator.py``, read through ``aCTPandaJob``) takes ``jobId``, ``state``,
  ``startTime``/``endTime`` (epoch seconds, turned into dates with ``utcfromtimestamp``), ``xml``
  (a JSON *string*: ``{"<lfn>": {"guid", "fsize", "adler32", "surl"}}``, checked against the storage),
  ``metaData`` (the job report, a JSON string), the CPU and core figures and the error fields.
* ``output.list``: one line per file ARC must upload, ``<file> <url>:checksumtype=adler32:checksumvalue=
  <adler32>`` (``create_output_list`` of Pilot 3's ARC copytools; aCT's xRSL names it as the dynamic
  output list ``@output.list``, ``aCTPanda2Xrsl.setOutputs``).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpcpilot.comm.base import JobReport
from hpcpilot.comm.job_report import job_report_document
from hpcpilot.comm.panda_api import METRIC_PARAMS
from hpcpilot.comm.wire import panda_id_or_none
from hpcpilot.model.bounds import fit_words
from hpcpilot.model.errors import CommunicatorError
from hpcpilot.model.job import Job

#: The job aCT puts into the session directory (``aCTPanda2Xrsl.setInputs``).
JOB_FILE = "pandaJobData.out"
#: The report aCT downloads (``aCTPanda2Xrsl.setOutputs``; Pilot 3's ``config.Pilot.heartbeat_message``).
HEARTBEAT_FILE = "heartbeat.json"
#: ARC's dynamic list of outputs to upload (``@output.list`` in aCT's xRSL).
OUTPUT_LIST = "output.list"
#: What PanDA keeps of ``pilotErrorDiag`` (the v1 API cuts it there too).
DIAG_MAX = 500


@dataclass(frozen=True, slots=True)
class StagedFile:
    """One file ARC uploads for the job: where it lies and where it goes.

    Attributes
    ----------
    lfn
        The file's logical name (the key of ``xml``).
    name
        Its path relative to the session directory (what ``output.list`` names).
    surl
        Its destination.
    fsize
        Size in bytes.
    adler32
        Adler32, 8 lower-case hex digits.
    guid
        Its GUID.
    """

    lfn: str
    name: str
    surl: str
    fsize: int
    adler32: str
    guid: str


def parse_job_data(text: str, *, source: str) -> dict[str, Any]:
    """The job dict of ``pandaJobData.out``: urlencoded (``PandaID=1&...``) or JSON.

    JSON may be the job dict itself or ``{"<PandaID>": {job dict}}`` with one job.

    Raises
    ------
    CommunicatorError
        If it holds no job with a PandaID; names the file.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise CommunicatorError(
                f"{JOB_FILE} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                context={"source": source},
            ) from None
        if isinstance(data, dict) and "PandaID" not in data and len(data) == 1:
            [(key, inner)] = data.items()
            if panda_id_or_none(str(key)) is not None and isinstance(inner, dict):
                data = inner
        if not isinstance(data, dict):
            raise CommunicatorError(f"{JOB_FILE} must hold one job", context={"source": source})
        job: dict[str, Any] = data
    else:
        job = dict(urllib.parse.parse_qsl(stripped, keep_blank_values=True))
    if not str(job.get("PandaID", "")).strip():
        raise CommunicatorError(
            f"{JOB_FILE} holds no job: no PandaID", context={"source": source, "field": "PandaID"}
        )
    return job


def surl_of(template: str, *, lfn: str, scope: str, panda_id: int) -> str:
    """The destination of a file: ``template`` with ``{lfn}``, ``{scope}``, ``{PandaID}`` replaced.

    A template that does not name ``{lfn}`` is a directory URL: ``/<lfn>`` is added.
    """
    if "{lfn}" not in template:
        template = template.rstrip("/") + "/{lfn}"
    return template.replace("{scope}", scope).replace("{PandaID}", str(panda_id)).replace("{lfn}", lfn)


def file_info(files: Sequence[StagedFile]) -> str:
    """The ``xml`` field: ``{"<lfn>": {"guid", "fsize", "adler32", "surl"}}`` as a JSON string.

    Pilot 3's ``job.fileinfo`` (``_stage_out_new`` in ``pilot/control/data.py``), sent as
    ``xml=dumps(job.fileinfo)``.
    """
    return json.dumps(
        {f.lfn: {"guid": f.guid, "fsize": f.fsize, "adler32": f.adler32, "surl": f.surl} for f in files}
    )


def output_list(files: Sequence[StagedFile]) -> str:
    """``output.list``: ``<name> <surl>:checksumtype=adler32:checksumvalue=<adler32>`` per file."""
    return "".join(f"{f.name} {f.surl}:checksumtype=adler32:checksumvalue={f.adler32}\n" for f in files)


def _stamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))


def heartbeat(
    report: JobReport,
    job: Job | None,
    *,
    now: float,
    xml: str | None = None,
    metadata: str | None = None,
) -> dict[str, Any]:
    """``heartbeat.json`` for one state of the job: Pilot 3's ``get_data_structure`` fields.

    Parameters
    ----------
    report
        The job's state and figures.
    job
        The job (None for a definition that could not be parsed).
    now
        The time of writing (``timestamp``).
    xml, metadata
        The final report's output map (`file_info`) and job report, both JSON strings.
    """
    data: dict[str, Any] = {
        "jobId": str(report.panda_id),  # Pilot 3's job.jobid is the PandaID as a string
        "state": report.state.value,
        "timestamp": _stamp(now),
        "node": report.host,
        "coreCount": report.core_count,
        "cpuConsumptionTime": round(report.cpu_s),
        "cpuConsumptionUnit": "s",
        "cpuConversionFactor": 1.0,
    }
    if job is not None:
        data["attemptNr"] = job.attempt_nr
    if report.start_time:
        data["startTime"] = report.start_time
    if report.n_events:
        data["nEvents"] = report.n_events
    words = [f"{k}={v}" for k, v in report.ranges.items()] + report.job_metrics.split()
    if words:
        data["jobMetrics"] = fit_words(words)
    data.update((k, round(v)) for k, v in report.metrics.items() if k in METRIC_PARAMS)
    if xml is not None:
        data["xml"] = xml
    if metadata is not None:
        data["metaData"] = metadata
    if report.state.is_final:
        data["endTime"] = report.end_time or now
        data["startTime"] = report.start_time or data["endTime"]
        data["pilotErrorCode"] = report.error_code or 0
        data["pilotErrorDiag"] = report.error_diag[:DIAG_MAX]
        data["transExitCode"] = report.exit_code if report.exit_code is not None else 0
        data["exeErrorCode"] = 0
        data["exeErrorDiag"] = ""
        if job is not None:
            data["nInputFiles"] = len(job.input_files)
    return data


def metadata_text(payload_report: str | None, report: JobReport) -> str:
    """``metaData``: the payload's own ``jobReport.json`` when it is a JSON object, else one built here."""
    if payload_report is not None:
        try:
            parsed = json.loads(payload_report)
        except ValueError:
            parsed = None
        if isinstance(parsed, Mapping):
            return json.dumps(parsed)
    return json.dumps(job_report_document(report))
