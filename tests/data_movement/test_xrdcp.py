"""xrdcp against a real local xrootd, through the staging clients."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.config.schema import DataSettings
from hpcpilot.data.checksums import adler32_of_file
from hpcpilot.data.copytools.xrdcp import XrdcpCopytool
from hpcpilot.data.staging import StageInClient, StageOutClient, StagingClient
from hpcpilot.data.transfer import Direction, Transfer
from hpcpilot.model.errors import ErrorCode, StagingError
from hpcpilot.model.job import Checksum, ChecksumAlgorithm, FileSpec, Job
from tests.data_movement.conftest import Xrootd, free_port

AD = ChecksumAlgorithm.ADLER32


def data_settings(xrootd: Xrootd, **changes: Any) -> DataSettings:
    values: dict[str, Any] = {
        "stagein_tools": ("xrdcp",),
        "stagein_source": f"{xrootd.url}//store/{{scope}}/{{lfn}}",
        "stageout_tools": ("xrdcp",),
        "stageout_destination": f"{xrootd.url}//store/{{scope}}/{{lfn}}",
        "retries": 1,
        "backoff_s": 0.1,
        "backoff_max_s": 0.2,
        "timeout_s": 60.0,
    }
    values.update(changes)
    return DataSettings(**values)


def random_file(path: Path, size: int = 3_000_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_round_trip_out_and_back_in_verified_by_checksum(xrootd: Xrootd, tmp_path: Path) -> None:
    settings = data_settings(xrootd)
    output = random_file(tmp_path / "job" / "HITS.12345._000001.pool.root.1")
    local_sum = Checksum(AD, adler32_of_file(output))
    spec = FileSpec(lfn=output.name, scope="mc23_13p6TeV")

    out = StageOutClient.from_settings(settings)
    [transfer] = out.plan(Job(panda_id=12345), [(spec, output)])
    assert transfer.destination == f"{xrootd.url}//store/mc23_13p6TeV/{output.name}"
    [result] = out.transfer([transfer])
    assert result.ok, result.error_diag
    assert result.tool == "xrdcp" and result.checksum == local_sum and result.fsize == output.stat().st_size
    stored = xrootd.path(f"mc23_13p6TeV/{output.name}")
    assert stored.read_bytes() == output.read_bytes()

    job_dir = tmp_path / "next-job"
    job_dir.mkdir()
    wanted = FileSpec(lfn=output.name, scope="mc23_13p6TeV", fsize=output.stat().st_size, checksum=local_sum)
    into = StageInClient.from_settings(settings)
    [transfer] = into.plan(Job(panda_id=12346, input_files=(wanted,)), job_dir)
    [result] = into.transfer([transfer])
    assert result.ok, result.error_diag
    assert result.checksum == local_sum and (job_dir / output.name).read_bytes() == output.read_bytes()
    assert into.plan(Job(panda_id=12346, input_files=(wanted,)), job_dir) == []  # now present


def test_wrong_expected_checksum_is_1171_and_the_copy_is_removed(xrootd: Xrootd, tmp_path: Path) -> None:
    source = random_file(xrootd.path("bad/EVNT.1"), 100_000)
    os.chown(source.parent, *_owner(xrootd))
    job_dir = tmp_path / "job"
    spec = FileSpec(lfn="EVNT.1", scope="bad", checksum=Checksum(AD, "deadbeef"))
    into = StageInClient.from_settings(data_settings(xrootd))
    [result] = into.transfer(into.plan(Job(panda_id=1, input_files=(spec,)), job_dir))
    assert not result.ok and result.error_code == ErrorCode.STAGE_IN_CHECKSUM_MISMATCH
    assert (
        "EVNT.1" in result.error_diag
        and "xrdcp" in result.error_diag
        and "CheckSum error" in result.error_diag
    )
    assert not (job_dir / "EVNT.1").exists()


def test_missing_remote_file_is_1103(xrootd: Xrootd, tmp_path: Path) -> None:
    into = StageInClient.from_settings(data_settings(xrootd))
    spec = FileSpec(lfn="EVNT.missing", scope="nowhere")
    [result] = into.transfer(into.plan(Job(panda_id=2, input_files=(spec,)), tmp_path))
    assert not result.ok and result.error_code == ErrorCode.NO_SUCH_FILE
    assert result.attempts == 1  # not retried
    assert "[3011]" in result.error_diag and "EVNT.missing" in result.error_diag


def test_unreachable_port_fails_quickly_with_a_clear_diag(xrootd: Xrootd, tmp_path: Path) -> None:
    port = free_port()
    settings = data_settings(xrootd, stagein_source=f"root://127.0.0.1:{port}//store/{{lfn}}")
    into = StageInClient.from_settings(settings)
    [result] = into.transfer(into.plan(Job(panda_id=3, input_files=(FileSpec(lfn="EVNT.2"),)), tmp_path))
    assert not result.ok and result.error_code == ErrorCode.STAGE_IN_FAILED
    assert result.attempts == 2  # a network error is retried
    assert "network error" in result.error_diag and "Connection error" in result.error_diag
    assert "timed out" not in result.error_diag  # quickly: refused at once, not left to a timeout


def test_upload_with_a_wrong_checksum_is_1172_and_removed(xrootd: Xrootd, tmp_path: Path) -> None:
    output = random_file(tmp_path / "out.root", 50_000)
    url = f"{xrootd.url}//store/direct/out.root"
    transfer = Transfer("out.root", str(output), url, Direction.OUT, checksum=Checksum(AD, "00000001"))
    with pytest.raises(StagingError) as info:
        XrdcpCopytool().copy(transfer, 30)
    assert info.value.code == ErrorCode.STAGE_OUT_CHECKSUM_MISMATCH and not info.value.retryable
    assert not xrootd.path("direct/out.root").exists()  # --rm-bad-cksum


def test_read_only_export_is_a_stage_out_failure(xrootd: Xrootd, tmp_path: Path) -> None:
    output = random_file(tmp_path / "log.tgz", 10_000)
    settings = data_settings(xrootd, stageout_destination=f"{xrootd.url}//readonly")
    out = StageOutClient.from_settings(settings, log=True)
    [result] = out.transfer(out.plan(Job(panda_id=4), [(FileSpec(lfn="log.tgz"), output)]))
    assert not result.ok and result.error_code == ErrorCode.STAGE_OUT_FAILED
    assert "read/only" in result.error_diag and result.attempts == 1


def test_a_timeout_is_1151(xrootd: Xrootd, tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        settings = data_settings(xrootd, retries=0, timeout_s=2.0)
        client = StagingClient(settings, Direction.IN, ["xrdcp"])
        transfer = Transfer(
            "EVNT.3", f"root://127.0.0.1:{port}//store/EVNT.3", str(tmp_path / "EVNT.3"), Direction.IN
        )
        [result] = client.transfer([transfer])
    assert not result.ok and result.error_code == ErrorCode.STAGE_IN_TIMEOUT
    assert "timed out after 2 s" in result.error_diag


def test_fallback_from_a_failing_source_tool_to_xrdcp(xrootd: Xrootd, tmp_path: Path) -> None:
    """A chain "cp,xrdcp": cp does not handle root://, xrdcp moves the file."""
    source = random_file(xrootd.path("chain/EVNT.4"), 20_000)
    os.chown(source.parent, *_owner(xrootd))
    into = StageInClient.from_settings(data_settings(xrootd, stagein_tools=("cp", "xrdcp")))
    [result] = into.transfer(
        into.plan(Job(panda_id=5, input_files=(FileSpec(lfn="EVNT.4", scope="chain"),)), tmp_path)
    )
    assert result.ok and result.tool == "xrdcp" and result.attempts == 1


def _owner(xrootd: Xrootd) -> tuple[int, int]:
    stat = xrootd.data.stat()
    return stat.st_uid, stat.st_gid


def test_md5_expected_on_stage_in(xrootd: Xrootd, tmp_path: Path) -> None:
    """An input with an md5: xrdcp --cksum md5:<hex> checks the local copy, and so does the client."""
    source = random_file(xrootd.path("md5/EVNT.5"), 30_000)
    good = Checksum(ChecksumAlgorithm.MD5, hashlib.md5(source.read_bytes()).hexdigest())
    into = StageInClient.from_settings(data_settings(xrootd))
    job = Job(panda_id=6, input_files=(FileSpec(lfn="EVNT.5", scope="md5", checksum=good),))
    [result] = into.transfer(into.plan(job, tmp_path / "ok"))
    assert result.ok and result.checksum == good
    bad = FileSpec(lfn="EVNT.5", scope="md5", checksum=Checksum(ChecksumAlgorithm.MD5, "0" * 32))
    [result] = into.transfer(into.plan(Job(panda_id=7, input_files=(bad,)), tmp_path / "bad"))
    assert not result.ok and result.error_code == ErrorCode.STAGE_IN_CHECKSUM_MISMATCH
