"""gfal-copy (gfal2's xrootd plugin) against a real local xrootd, through the staging clients."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.config.schema import DataSettings
from hpcpilot.data.checksums import adler32_of_file
from hpcpilot.data.staging import StageInClient, StageOutClient
from hpcpilot.model.errors import ErrorCode
from hpcpilot.model.job import Checksum, ChecksumAlgorithm, FileSpec, Job
from tests.conftest import need
from tests.data_movement.conftest import Xrootd, gfal_works

AD = ChecksumAlgorithm.ADLER32


@pytest.fixture(scope="module")
def gfal() -> None:
    need(gfal_works(), "gfal-copy with gfal2's xrootd plugin (ci/install-data.sh)")


def data_settings(xrootd: Xrootd, **changes: Any) -> DataSettings:
    values: dict[str, Any] = {
        "stagein_tools": ("gfal",),
        "stagein_source": f"{xrootd.url}//store/gfal/{{lfn}}",
        "stageout_tools": ("gfal",),
        "stageout_destination": f"{xrootd.url}//store/gfal/{{panda_id}}",
        "retries": 0,
        "timeout_s": 60.0,
    }
    values.update(changes)
    return DataSettings(**values)


def test_gfal_round_trip_with_adler32(gfal: None, xrootd: Xrootd, tmp_path: Path) -> None:
    output = tmp_path / "job" / "AOD.1"
    output.parent.mkdir()
    output.write_bytes(os.urandom(2_000_000))
    local_sum = Checksum(AD, adler32_of_file(output))
    settings = data_settings(xrootd, stageout_destination=f"{xrootd.url}//store/gfal")
    out = StageOutClient.from_settings(settings)
    [result] = out.transfer(out.plan(Job(panda_id=77), [(FileSpec(lfn="AOD.1"), output)]))
    assert result.ok, result.error_diag
    assert result.tool == "gfal" and result.checksum == local_sum
    assert xrootd.path("gfal/AOD.1").read_bytes() == output.read_bytes()

    into = StageInClient.from_settings(settings)
    spec = FileSpec(lfn="AOD.1", fsize=output.stat().st_size, checksum=local_sum)
    job_dir = tmp_path / "next"
    [result] = into.transfer(into.plan(Job(panda_id=78, input_files=(spec,)), job_dir))
    assert result.ok, result.error_diag
    assert (job_dir / "AOD.1").read_bytes() == output.read_bytes()


def test_gfal_wrong_checksum_is_1171(gfal: None, xrootd: Xrootd, tmp_path: Path) -> None:
    stored = xrootd.path("gfal/EVNT.9")
    stored.parent.mkdir(exist_ok=True)
    stored.write_bytes(b"x" * 1000)
    into = StageInClient.from_settings(data_settings(xrootd))
    spec = FileSpec(lfn="EVNT.9", checksum=Checksum(AD, "deadbeef"))
    [result] = into.transfer(into.plan(Job(panda_id=79, input_files=(spec,)), tmp_path))
    assert not result.ok and result.error_code == ErrorCode.STAGE_IN_CHECKSUM_MISMATCH
    assert "gfal" in result.error_diag and not (tmp_path / "EVNT.9").exists()


def test_gfal_missing_remote_file_is_1103(gfal: None, xrootd: Xrootd, tmp_path: Path) -> None:
    into = StageInClient.from_settings(data_settings(xrootd))
    [result] = into.transfer(into.plan(Job(panda_id=80, input_files=(FileSpec(lfn="EVNT.none"),)), tmp_path))
    assert not result.ok and result.error_code == ErrorCode.NO_SUCH_FILE
