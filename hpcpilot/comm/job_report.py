"""The job report the pilot writes for a job whose payload wrote none: ``jobReport.json``'s shape.

One document for every communicator that passes a job report on: Harvester's ``jobReportFile``, the
PanDA server's ``meta_data`` of the final ``update_job``, aCT's ``metaData`` in ``heartbeat.json``.
"""

from __future__ import annotations

from typing import Any

from hpcpilot.comm.base import JobReport

__all__ = ["job_report_document"]


def job_report_document(report: JobReport) -> dict[str, Any]:
    """A ``jobReport.json`` in the shape of a payload's job report (it becomes the job's metaData)."""
    failed = report.error_code not in (None, 0)
    outputs = [
        {
            "name": str(o.get("path", "")).rsplit("/", 1)[-1],
            "file_size": o.get("fsize"),
            "adler32": o.get("adler32"),
        }
        for o in report.outputs
    ]
    return {
        "exitCode": report.error_code or 0,
        "exitAcronym": "OK" if not failed else "PILOT_ERROR",
        "exitMsg": report.error_diag or "OK",
        "files": {"output": [{"subFiles": outputs}]} if outputs else {},
        "resource": {
            "transform": {
                "cpuTime": round(report.cpu_s, 3),
                "wallTime": round(report.wall_s, 3),
                "processedEvents": report.n_events,
            },
        },
        "hpcpilot": {"eventRanges": dict(report.ranges), "jobStatus": report.state.value},
    }
