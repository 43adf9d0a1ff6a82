"""The Pilot API (`hpcpilot.api`) as a public interface: only its own names are used here."""

from __future__ import annotations

import hashlib
import inspect
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

import hpcpilot.api as api
from tests.conftest import pilot_env
from tests.fakes.batchq import Replay

FAST = api.DataSettings(retries=1, backoff_s=0.01, backoff_max_s=0.01, timeout_s=10.0)
PAYLOAD = b"event data " * 1000
OTHER = b"something else entirely"


def adler(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def job_dict(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "PandaID": "4242",
        "inFiles": "EVNT.01.pool.root.1,EVNT.02.pool.root.1",
        "GUID": "0f0f0f0f-0000-4000-8000-000000000001,0f0f0f0f-0000-4000-8000-000000000002",
        "fsize": f"{len(PAYLOAD)},{len(OTHER)}",
        "checksum": f"ad:{adler(PAYLOAD)},ad:{adler(OTHER)}",
        "scopeIn": "mc23,mc23",
        "outFiles": "HITS.01.pool.root.1,log.01.tgz",
        "scopeOut": "mc23,mc23",
        "logFile": "log.01.tgz",
    }
    raw.update(changes)
    return raw


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    store = tmp_path / "storage"
    store.mkdir()
    (store / "EVNT.01.pool.root.1").write_bytes(PAYLOAD)
    (store / "EVNT.02.pool.root.1").write_bytes(OTHER)
    return store


# --------------------------------------------------------------------------- the surface


def test_all_is_exactly_the_documented_surface() -> None:
    public = {name for name in vars(api) if not name.startswith("_")}
    public -= {"annotations", "os", "Mapping", "Sequence", "Path", "TYPE_CHECKING", "Any", "StrPath"}
    public -= {"ChecksumAlgorithm"}  # used internally, not part of the surface
    assert set(api.__all__) == public
    assert len(api.__all__) == len(set(api.__all__))
    for name in api.__all__:
        obj = getattr(api, name)
        assert inspect.getdoc(obj), name
        if inspect.isfunction(obj):
            assert "Returns" in (obj.__doc__ or ""), name


def test_functions_take_their_options_by_keyword() -> None:
    for name in ("stage_in", "stage_in_files", "stage_out"):
        params = inspect.signature(getattr(api, name)).parameters
        keyword_only = {p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY}
        assert {"source", "destination", "tools", "settings"} & keyword_only, name
        assert "tools" in keyword_only and "settings" in keyword_only


def test_import_is_light() -> None:
    code = "import sys, hpcpilot.api\nprint('\\n'.join(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=pilot_env()
    ).stdout.split()
    heavy = ("mpi4py", "h5py", "numpy", "yaml", "hpcpilot.data.staging", "hpcpilot.batch", "hpcpilot.comm")
    assert [m for m in out if m.startswith(heavy)] == []
    assert "hpcpilot.api" in out


# --------------------------------------------------------------------------- checksums


def test_checksums_match_zlib_and_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD)
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    assert api.checksum(path) == adler(PAYLOAD)
    assert api.checksum(str(path), algorithm="AD") == adler(PAYLOAD)
    assert api.checksum(path, algorithm="md5") == md5
    assert api.checksum_spec(path) == f"ad:{adler(PAYLOAD)}"
    assert api.checksum_spec(path, "md5") == f"md5:{md5}"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert api.checksum(empty) == "00000001"


def test_verify_checksum_accepts_the_wire_forms(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD)
    value = adler(PAYLOAD)
    assert api.verify_checksum(path, f"ad:{value}")
    assert api.verify_checksum(path, value.upper())  # bare adler32, as old jobs give it
    assert api.verify_checksum(path, f"md5:{hashlib.md5(PAYLOAD).hexdigest()}")
    assert api.verify_checksum(path, api.Checksum.parse(f"ad:{value}"))
    assert not api.verify_checksum(path, f"ad:{adler(OTHER)}")
    assert not api.verify_checksum(path, "md5:" + "0" * 32)


def test_checksum_errors(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown checksum algorithm 'sha1'"):
        api.checksum(path, "sha1")
    with pytest.raises(ValueError):
        api.verify_checksum(path, "sha1:abc")
    with pytest.raises(ValueError):
        api.verify_checksum(path, "ad:not-hex")
    with pytest.raises(FileNotFoundError):
        api.checksum(tmp_path / "missing")


# --------------------------------------------------------------------------- jobs and settings


def test_parse_job_and_its_errors() -> None:
    job = api.parse_job(job_dict())
    assert isinstance(job, api.Job)
    assert job.panda_id == 4242
    assert [f.lfn for f in job.input_files] == ["EVNT.01.pool.root.1", "EVNT.02.pool.root.1"]
    assert job.input_files[0].checksum == api.Checksum.parse(f"ad:{adler(PAYLOAD)}")
    assert job.log_file is not None and job.log_file.lfn == "log.01.tgz"
    with pytest.raises(api.JobDefinitionError, match="PandaID") as info:
        api.parse_job({"inFiles": "a"}, source="worker 7")
    assert info.value.context["source"] == "worker 7"
    with pytest.raises(api.JobDefinitionError, match="fsize"):
        api.parse_job(job_dict(fsize="1"))


def test_load_settings_layers(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("data:\n  stagein_tools: xrdcp,cp\n  retries: 5\n")
    settings = api.load_settings(config_file=site, overrides={"data.retries": "1"}, env={})
    assert isinstance(settings, api.Settings)
    assert settings.data.stagein_tools == ("xrdcp", "cp")
    assert settings.data.retries == 1
    assert api.load_settings(env={}) == api.Settings()
    with pytest.raises(api.ConfigError, match="retries"):
        api.load_settings(overrides={"data.retries": "many"}, env={})
    with pytest.raises(api.ConfigError):
        api.load_settings(site="no-such-site", env={})


# --------------------------------------------------------------------------- stage-in


def test_stage_in_from_a_directory(storage: Path, tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    results = api.stage_in(job_dict(), job_dir, source=str(storage), settings=FAST)
    assert [r.ok for r in results] == [True, True]
    assert [r.transfer.lfn for r in results] == ["EVNT.01.pool.root.1", "EVNT.02.pool.root.1"]
    assert results[0].tool == "cp"
    assert results[0].fsize == len(PAYLOAD)
    assert str(results[0].checksum) == f"ad:{adler(PAYLOAD)}"
    assert (job_dir / "EVNT.01.pool.root.1").read_bytes() == PAYLOAD
    # everything in place now: nothing to move
    assert api.stage_in(api.parse_job(job_dict()), job_dir, source=str(storage), settings=FAST) == []


def test_stage_in_wrong_checksum_is_a_failed_result(storage: Path, tmp_path: Path) -> None:
    bad = job_dict(checksum=f"ad:{adler(b'nope')},ad:{adler(OTHER)}")
    job_dir = tmp_path / "job"
    first, second = api.stage_in(bad, job_dir, source=str(storage), settings=FAST)
    assert not first.ok
    assert first.error_code == 1171  # PanDA's number
    assert first.error_code is api.ErrorCode.STAGE_IN_CHECKSUM_MISMATCH
    assert "EVNT.01.pool.root.1" in first.error_diag and "checksum mismatch" in first.error_diag
    assert not (job_dir / "EVNT.01.pool.root.1").exists()  # the bad copy is removed
    assert second.ok  # one bad file does not stop the others


GUID3 = "0f0f0f0f-0000-4000-8000-000000000003"


def test_stage_in_md5_checksum(storage: Path, tmp_path: Path) -> None:
    raw = job_dict(
        inFiles="EVNT.01.pool.root.1", GUID=GUID3, fsize=str(len(PAYLOAD)), scopeIn="mc23",
        checksum=f"md5:{hashlib.md5(PAYLOAD).hexdigest()}",
    )  # fmt: skip
    (result,) = api.stage_in(raw, tmp_path / "job", source=str(storage), settings=FAST)
    assert result.ok and str(result.checksum).startswith("md5:")


def test_stage_in_honours_harvester_links(storage: Path, tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "EVNT.01.pool.root.1").symlink_to(storage / "EVNT.01.pool.root.1")
    results = api.stage_in(job_dict(), job_dir, source=str(storage), settings=FAST)
    assert [r.transfer.lfn for r in results] == ["EVNT.02.pool.root.1"]
    assert (job_dir / "EVNT.01.pool.root.1").is_symlink()  # left as Harvester made it
    # every input linked in: no source needed at all
    (job_dir / "EVNT.02.pool.root.1").unlink()
    (job_dir / "EVNT.02.pool.root.1").symlink_to(storage / "EVNT.02.pool.root.1")
    assert api.stage_in(job_dict(), job_dir) == []


def test_stage_in_top_directory(storage: Path) -> None:
    job_dir = storage / "job"
    assert api.stage_in(job_dict(), job_dir, top=storage) == []


def test_stage_in_errors(storage: Path, tmp_path: Path) -> None:
    job_dir = tmp_path / "job"
    with pytest.raises(api.StagingError, match="nowhere to stage it in from") as info:
        api.stage_in(job_dict(), job_dir)
    assert info.value.code == api.ErrorCode.NO_SUCH_FILE
    with pytest.raises(api.StagingError, match="needs the dataset") as info:
        api.stage_in(job_dict(), job_dir, source="/store/{dataset}/{lfn}")
    assert info.value.code == 1099
    with pytest.raises(api.JobDefinitionError):
        api.stage_in({"PandaID": "x"}, job_dir, source=str(storage))
    with pytest.raises(api.PluginError):
        api.stage_in(job_dict(), job_dir, source=str(storage), tools="no-such-tool")
    # a file missing at the source is a result, not an exception
    (storage / "EVNT.02.pool.root.1").unlink()
    first, second = api.stage_in(job_dict(), job_dir, source=str(storage), settings=FAST)
    assert first.ok and not second.ok
    assert second.error_code == 1103


def test_stage_in_settings_and_templates(storage: Path, tmp_path: Path) -> None:
    nested = tmp_path / "nested" / "mc23"
    nested.mkdir(parents=True)
    (nested / "EVNT.01.pool.root.1").write_bytes(PAYLOAD)
    (nested / "EVNT.02.pool.root.1").write_bytes(OTHER)
    whole = api.Settings(data=api.DataSettings(stagein_source=str(tmp_path / "nested" / "{scope}" / "{lfn}")))
    results = api.stage_in(job_dict(), tmp_path / "job", settings=whole)
    assert all(r.ok for r in results) and len(results) == 2
    assert results[0].transfer.source == str(nested / "EVNT.01.pool.root.1")


def test_stage_in_files_without_a_job(storage: Path, tmp_path: Path) -> None:
    spec = api.FileSpec(
        "EVNT.01.pool.root.1", fsize=len(PAYLOAD), checksum=api.Checksum.parse(adler(PAYLOAD))
    )
    results = api.stage_in_files(
        [spec, "EVNT.02.pool.root.1"], tmp_path / "dest", source=str(storage), settings=FAST
    )
    assert [r.ok for r in results] == [True, True]
    assert (tmp_path / "dest" / "EVNT.02.pool.root.1").read_bytes() == OTHER
    with pytest.raises(api.StagingError, match="not a plain file name"):
        api.stage_in_files(["../escape"], tmp_path / "dest", source=str(storage))


# --------------------------------------------------------------------------- stage-out


def test_stage_out_to_a_directory(tmp_path: Path) -> None:
    out = tmp_path / "HITS.01.pool.root.1"
    out.write_bytes(PAYLOAD)
    dest = tmp_path / "out"
    (result,) = api.stage_out(job_dict(), [out], destination=f"{dest}/{{scope}}/{{lfn}}", settings=FAST)
    assert result.ok, result.error_diag
    assert (dest / "mc23" / "HITS.01.pool.root.1").read_bytes() == PAYLOAD
    assert result.fsize == len(PAYLOAD)
    assert str(result.checksum) == f"ad:{adler(PAYLOAD)}"
    assert result.transfer.direction is api.Direction.OUT


def test_stage_out_log_and_missing_file(tmp_path: Path) -> None:
    log_file = tmp_path / "log.01.tgz"
    log_file.write_bytes(OTHER)
    data = api.DataSettings(
        stageout_destination=str(tmp_path / "outs"), log_destination=str(tmp_path / "logs")
    )
    (result,) = api.stage_out(job_dict(), [str(log_file)], settings=data, log=True)
    assert result.ok
    assert (tmp_path / "logs" / "log.01.tgz").read_bytes() == OTHER
    (missing,) = api.stage_out(job_dict(), [tmp_path / "HITS.01.pool.root.1"], settings=data)
    assert not missing.ok
    assert missing.error_code == api.ErrorCode.MISSING_OUTPUT_FILE


def test_stage_out_errors(tmp_path: Path) -> None:
    out = tmp_path / "HITS.01.pool.root.1"
    out.write_bytes(PAYLOAD)
    with pytest.raises(api.StagingError, match="no stage-out destination") as info:
        api.stage_out(job_dict(), [out])
    assert info.value.code == api.ErrorCode.STAGE_OUT_FAILED
    with pytest.raises(api.StagingError, match="log tarball alone"):
        api.stage_out(job_dict(), [out, out], destination=str(tmp_path), log=True)
    with pytest.raises(api.StagingError, match="needs the dataset"):
        api.stage_out(job_dict(), [out], destination=str(tmp_path / "{dataset}"))


# --------------------------------------------------------------------------- allocation


SLURM = {
    "SLURM_JOB_ID": "77",
    "SLURM_JOB_NODELIST": "nid[001-003]",
    "SLURM_JOB_CPUS_PER_NODE": "64(x3)",
    "SLURM_GPUS_ON_NODE": "4",
    "SLURM_JOB_PARTITION": "regular",
    "SLURM_JOB_ACCOUNT": "atlas",
}


def test_allocation_from_a_slurm_environment() -> None:
    run = Replay({("squeue", "-h", "-j", "77", "-o", "%e"): "2031-05-06T07:08:09\n"})
    alloc = api.allocation(env=SLURM, run=run)
    assert isinstance(alloc, api.Allocation)
    assert alloc.batch_system == "slurm"
    assert alloc.job_id == "77"
    assert alloc.nodes == ("nid001", "nid002", "nid003")
    assert (alloc.cores_per_node, alloc.gpus_per_node) == (64, 4)
    assert (alloc.queue, alloc.account) == ("regular", "atlas")
    assert alloc.end_time == time.mktime((2031, 5, 6, 7, 8, 9, 0, 0, -1))
    assert run.calls == [("squeue", "-h", "-j", "77", "-o", "%e")]


def test_allocation_by_name_and_settings() -> None:
    alloc = api.allocation("local", env=SLURM, run=Replay())
    assert alloc.batch_system == "local" and alloc.job_id is None
    settings = api.Settings(batch=api.BatchSettings(system="local"))
    assert api.allocation(env=SLURM, settings=settings, run=Replay()).batch_system == "local"
    assert api.allocation(env={}, run=Replay()).batch_system == "local"  # auto outside a batch job


def test_allocation_errors() -> None:
    with pytest.raises(api.PluginError):
        api.allocation("moab", env={})
    with pytest.raises(api.BatchSystemError, match="SLURM_JOB_NODELIST"):
        api.allocation("slurm", env={"SLURM_JOB_ID": "1"}, run=Replay())
