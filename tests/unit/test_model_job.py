from __future__ import annotations

from typing import Any

import pytest

from hpcpilot.model.errors import ErrorCode, JobDefinitionError
from hpcpilot.model.job import Checksum, ChecksumAlgorithm, parse_job

# A job dict in the shape the PanDA server sends (strings everywhere, aligned per-file lists).
SERVER_JOB: dict[str, Any] = {
    "PandaID": "6543210987",
    "jobsetID": "6543210900",
    "taskID": "41000123",
    "attemptNr": "2",
    "transformation": "Sim_tf.py",
    "jobPars": "--inputEVNTFile=EVNT.01._000001.pool.root.1 --maxEvents=100",
    "homepackage": "AtlasOffline/23.0.26",
    "swRelease": "Atlas-23.0.26",
    "cmtConfig": "x86_64-el9-gcc13-opt",
    "container_name": "NULL",
    "coreCount": "8",
    "minRamCount": "16000",
    "maxDiskCount": "5000",
    "maxCpuCount": "86400",
    "maxWalltime": "43200",
    "prodSourceLabel": "managed",
    "eventService": "True",
    "inFiles": "EVNT.01._000001.pool.root.1,NULL,EVNT.01._000003.pool.root.1",
    "GUID": "4A9B2C1E-7D3F-4E21-9A8B-1C2D3E4F5A6B,NULL,c3d4e5f6-0718-4293-a4b5-c6d7e8f90a1b",
    "fsize": "123456,NULL,654321",
    "checksum": "ad:0a1b2c3d,NULL,md5:0123456789abcdef0123456789abcdef",
    "scopeIn": "mc23_13p6TeV,NULL,mc23_13p6TeV",
    "realDatasetsIn": "ds1,NULL,ds1",
    "ddmEndPointIn": "SITE_DATADISK,NULL,SITE_DATADISK",
    "outFiles": "HITS.02._000001.pool.root.1,log.02._000001.job.log.tgz.1",
    "scopeOut": "mc23_13p6TeV,mc23_13p6TeV",
    "realDatasets": "hits_ds,log_ds",
    "ddmEndPointOut": "SITE_DATADISK,SITE_DATADISK",
    "destinationSE": "SITE",
    "logFile": "log.02._000001.job.log.tgz.1",
    "logGUID": "7E5D4C3B-2A19-4F08-B7C6-D5E4F3A2B1C0",
    "scopeLog": "mc23_13p6TeV",
}


def test_server_job_parses_into_typed_fields() -> None:
    job = parse_job(SERVER_JOB, source="test")
    assert job.panda_id == 6543210987
    assert (job.task_id, job.jobset_id, job.attempt_nr) == (41000123, 6543210900, 2)
    assert job.core_count == 8 and job.event_service is True
    assert job.min_ram_mb == 16000 and job.max_walltime_s == 43200
    assert job.container_name == ""  # NULL means nothing
    assert [f.lfn for f in job.input_files] == [
        "EVNT.01._000001.pool.root.1",
        "EVNT.01._000003.pool.root.1",
    ]
    first, third = job.input_files
    assert (
        first.fsize == 123456
        and first.guid == "4A9B2C1E-7D3F-4E21-9A8B-1C2D3E4F5A6B"
        and first.scope == "mc23_13p6TeV"
    )
    assert first.checksum == Checksum(ChecksumAlgorithm.ADLER32, "0a1b2c3d")
    assert third.checksum is not None and third.checksum.algorithm is ChecksumAlgorithm.MD5
    assert [f.lfn for f in job.output_files] == ["HITS.02._000001.pool.root.1"]
    assert job.log_file is not None and job.log_file.lfn == "log.02._000001.job.log.tgz.1"
    assert job.log_file.guid == "7E5D4C3B-2A19-4F08-B7C6-D5E4F3A2B1C0"
    assert job.main_output is not None and job.main_output.dataset == "hits_ds"


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("PandaID", None, "'PandaID' is missing"),
        ("PandaID", "abc", "'PandaID' must be an integer"),
        ("coreCount", "0", "'coreCount' must be >= 1"),
        ("eventService", "maybe", "'eventService' must be True or False"),
        (
            "GUID",
            "4A9B2C1E-7D3F-4E21-9A8B-1C2D3E4F5A6B,c3d4e5f6-0718-4293-a4b5-c6d7e8f90a1b",
            "'GUID' has 2 entries but the aligned list has 3",
        ),
        ("fsize", "x,NULL,2", "'fsize' entry 'x' is not an integer"),
        ("checksum", "sha1:abc,NULL,NULL", "'checksum'"),
        ("outFiles", "../../etc/passwd,log.02._000001.job.log.tgz.1", "'outFiles'"),
        ("inFiles", "a b,c,d", "'inFiles'"),
    ],
)
def test_malformed_field_is_named(field: str, value: object, needle: str) -> None:
    raw = dict(SERVER_JOB)
    raw[field] = value
    with pytest.raises(JobDefinitionError) as err:
        parse_job(raw, source="HPCJobs.json")
    message = str(err.value)
    assert needle in message
    assert "HPCJobs.json" in message
    assert err.value.context["field"] == field
    assert err.value.code is ErrorCode.GENERAL_ERROR


def test_minimal_job_gets_defaults() -> None:
    job = parse_job({"PandaID": 7, "transformation": "echo"}, source="t")
    assert job.core_count == 1 and not job.event_service
    assert job.input_files == () and job.output_files == () and job.log_file is None
    assert job.main_output is None


def test_not_a_dict() -> None:
    with pytest.raises(JobDefinitionError, match="not a dict"):
        parse_job(["PandaID", 1], source="t")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "algorithm", "value"),
    [
        ("ad:1", ChecksumAlgorithm.ADLER32, "00000001"),
        ("AD:ABCDEF01", ChecksumAlgorithm.ADLER32, "abcdef01"),
        ("0a0b0c0d", ChecksumAlgorithm.ADLER32, "0a0b0c0d"),
        ("md5:" + "f" * 32, ChecksumAlgorithm.MD5, "f" * 32),
    ],
)
def test_checksum_forms(text: str, algorithm: ChecksumAlgorithm, value: str) -> None:
    parsed = Checksum.parse(text)
    assert parsed.algorithm is algorithm and parsed.value == value
    assert str(parsed) == f"{algorithm.value}:{value}"


@pytest.mark.parametrize("text", ["ad:xyz", "ad:123456789", "crc:1"])
def test_bad_checksums(text: str) -> None:
    with pytest.raises(ValueError):
        Checksum.parse(text)
