"""Staging: URL templates, the clients' retries/backoff/fallback/verification, plans, the async stager."""

from __future__ import annotations

import hashlib
import threading
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from hpcpilot.config.schema import DataSettings, split_list
from hpcpilot.data import checksums
from hpcpilot.data.async_stager import AsyncStager
from hpcpilot.data.checksums import adler32_of_file, checksum_of_file, md5_of_file
from hpcpilot.data.copytools.base import Copytool, local_path, scheme_of
from hpcpilot.data.locations import fixed_prefix, location, rucio_path
from hpcpilot.data.staging import StageInClient, StageOutClient, StagingClient
from hpcpilot.data.transfer import Direction, Transfer, TransferResult
from hpcpilot.model.errors import ErrorCode, PluginError, StagingError
from hpcpilot.model.job import Checksum, ChecksumAlgorithm, FileSpec, Job
from hpcpilot.runtime.commands import CommandResult

AD = ChecksumAlgorithm.ADLER32
IN, OUT = Direction.IN, Direction.OUT
ROOT = "root://se.example.org:1094//store"


def adler(data: bytes) -> Checksum:
    return Checksum(AD, f"{zlib.adler32(data) & 0xFFFFFFFF:08x}")


def settings(**changes: Any) -> DataSettings:
    base: dict[str, Any] = {"retries": 2, "backoff_s": 1.0, "backoff_max_s": 3.0, "timeout_s": 10.0}
    base.update(changes)
    return DataSettings(**base)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeTool(Copytool):
    """A scripted copytool: each call pops an outcome (an exception to raise, or bytes to write)."""

    schemes: ClassVar[frozenset[str]] = frozenset({"file", "root"})

    def __init__(self, *outcomes: BaseException | bytes | None, confirm: Checksum | None = None) -> None:
        super().__init__()
        self.outcomes = list(outcomes)
        self.calls: list[tuple[Transfer, float]] = []
        self.confirm = confirm

    def copy(self, transfer: Transfer, timeout_s: float) -> Checksum | None:
        self.calls.append((transfer, timeout_s))
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, BaseException):
            raise outcome
        if scheme_of(transfer.destination) == "file":
            data = outcome if isinstance(outcome, bytes) else Path(local_path(transfer.source)).read_bytes()
            Path(local_path(transfer.destination)).write_bytes(data)
        return self.confirm if self.confirm is not None else None


def retryable(message: str = "network error", code: ErrorCode = ErrorCode.STAGE_IN_FAILED) -> StagingError:
    return StagingError(
        message, code=code, retryable=True, context={"stderr": "Run: [FATAL] Connection error"}
    )


def final(message: str = "no such file", code: ErrorCode = ErrorCode.NO_SUCH_FILE) -> StagingError:
    return StagingError(message, code=code, retryable=False)


def client(
    direction: Direction, tools: dict[str, Copytool], clock: FakeClock | None = None, **changes: Any
) -> StagingClient:
    clock = clock or FakeClock()
    return StagingClient(
        settings(**changes), direction, list(tools), sleep=clock.sleep, clock=clock, copytools=tools
    )


# -- locations ---------------------------------------------------------------------------------------

SPEC = FileSpec(
    lfn="EVNT.01._000001.pool.root.1",
    scope="mc23_13p6TeV",
    dataset="mc23_13p6TeV.801234.evgen.EVNT.e8514",
    ddm_endpoint="CERN-PROD_DATADISK",
)


def test_rucio_path_matches_published_and_documented_paths() -> None:
    # rucio/k8s-tutorial issue 16: "rucio upload --scope test file1" wrote .../rucio/test/80/25/file1
    assert rucio_path("test", "file1") == "test/80/25/file1"
    digest = hashlib.md5(b"user.jdoe:test.file.1").hexdigest()
    assert rucio_path("user.jdoe", "test.file.1") == f"user/jdoe/{digest[:2]}/{digest[2:4]}/test.file.1"
    assert rucio_path("group.phys-higgs", "f").startswith("group/phys-higgs/")
    assert rucio_path("mc23_13p6TeV", "x").startswith("mc23_13p6TeV/")  # dots kept for other scopes


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("/lustre/inputs", "/lustre/inputs/EVNT.01._000001.pool.root.1"),
        ("/lustre/inputs/", "/lustre/inputs/EVNT.01._000001.pool.root.1"),
        ("root://se:1094//atlas/{dataset}/{lfn}", "root://se:1094//atlas/mc23_13p6TeV.801234.evgen.EVNT.e8514/EVNT.01._000001.pool.root.1"),
        ("rucio://{endpoint}/{scope}:{lfn}", "rucio://CERN-PROD_DATADISK/mc23_13p6TeV:EVNT.01._000001.pool.root.1"),
        ("/out/{panda_id}/{lfn}", "/out/4242/EVNT.01._000001.pool.root.1"),
        ("/out/{panda_id}", "/out/4242/EVNT.01._000001.pool.root.1"),
        ("root://se//{scope}/", "root://se//mc23_13p6TeV/EVNT.01._000001.pool.root.1"),
        ("root://se//rucio/{rucio_path}", "root://se//rucio/mc23_13p6TeV/69/45/EVNT.01._000001.pool.root.1"),
        ("/weird/{{literal}}/{lfn}", "/weird/{literal}/EVNT.01._000001.pool.root.1"),
    ],
)  # fmt: skip
def test_location_templates(template: str, expected: str) -> None:
    assert location(template, SPEC, 4242) == expected


@pytest.mark.parametrize(
    ("template", "field"),
    [
        ("/x/{scope}/{lfn}", "scope"),
        ("/x/{rucio_path}", "scope"),
        ("/{dataset}", "dataset"),
        ("/{endpoint}", "endpoint"),
    ],
)
def test_location_names_the_missing_field_and_the_lfn(template: str, field: str) -> None:
    with pytest.raises(StagingError) as info:
        location(template, FileSpec(lfn="f.root"), 1)
    assert f"the {field} of f.root" in info.value.message
    assert info.value.context["field"] == field


def test_location_refuses_unknown_placeholders() -> None:
    with pytest.raises(StagingError, match=r"\{guid\}"):
        location("/x/{guid}", SPEC, 1)
    with pytest.raises(StagingError, match="malformed"):
        location("/x/{lfn", SPEC, 1)


@pytest.mark.parametrize(
    ("template", "field", "spec"),
    [
        ("/se/a/b/{scope}", "scope", FileSpec(lfn="HITS.1", scope="../../../victim")),
        ("/se/{scope}", "scope", FileSpec(lfn="HITS.1", scope="$(touch x)")),
        ("root://se//atlas/{scope}/{lfn}", "scope", FileSpec(lfn="HITS.1", scope="..")),
        ("root://se//atlas/{rucio_path}", "scope", FileSpec(lfn="HITS.1", scope="../../x")),
        ("root://se//atlas/{rucio_path}", "lfn", FileSpec(lfn="../../x", scope="mc23")),
        ("davs://se/{dataset}/{lfn}", "dataset", FileSpec(lfn="HITS.1", dataset="a/../../b")),
        ("rucio://{endpoint}/{scope}:{lfn}", "endpoint", FileSpec(lfn="H.1", scope="s", ddm_endpoint="X/..")),
        ("/lustre/inputs", "lfn", FileSpec(lfn="../../etc/passwd")),
        ("/out/{panda_id}", "lfn", FileSpec(lfn="a\nb")),
    ],
)  # fmt: skip
def test_location_refuses_a_value_that_breaks_its_naming_rule(
    template: str, field: str, spec: FileSpec
) -> None:
    with pytest.raises(StagingError) as info:
        location(template, spec, 4242)
    assert info.value.context["field"] == field and info.value.context["PandaID"] == 4242
    assert "cannot be placed in a location" in info.value.message


def test_a_local_location_must_resolve_under_the_templates_fixed_prefix(tmp_path: Path) -> None:
    se, outside = tmp_path / "se" / "a" / "b", tmp_path / "victim"
    se.mkdir(parents=True)
    outside.mkdir()
    spec = FileSpec(lfn="HITS.1", scope="mc23", dataset="ds1")
    assert location(f"{se}/{{scope}}", spec, 1) == f"{se}/mc23/HITS.1"  # below, not there yet: fine
    assert location(f"file://{se}/{{scope}}", spec, 1) == f"file://{se}/mc23/HITS.1"
    (se / "mc23").symlink_to(outside)  # a link under the prefix that leads out of it
    for template in (f"{se}/{{scope}}", f"file://{se}/{{scope}}/{{lfn}}", f"{se}/{{rucio_path}}"):
        with pytest.raises(StagingError) as info:
            location(template, spec, 1)
        assert "outside" in info.value.message and str(outside) in info.value.message
        assert info.value.context["field"] in {"scope,lfn", "rucio_path"}
    (se / "inside").mkdir()
    (se / "ds1").symlink_to(se / "inside")  # a link that stays under the prefix is fine
    assert location(f"{se}/{{dataset}}", spec, 1) == f"{se}/ds1/HITS.1"
    # the prefix ends at the last '/' before the first placeholder; links above it are the site's
    site = tmp_path / "site-link"
    site.symlink_to(tmp_path / "se")
    assert location(f"{site}/a/b/out{{panda_id}}", spec, 7) == f"{site}/a/b/out7/HITS.1"
    with pytest.raises(StagingError, match="outside"):
        location(f"{site}/a/b/{{scope}}", spec, 7)


def test_fixed_prefix() -> None:
    assert fixed_prefix("/lustre/out/{scope}/{lfn}") == "/lustre/out/"
    assert fixed_prefix("/lustre/out{panda_id}") == "/lustre/"
    assert fixed_prefix("/lustre/out") == "/lustre/out/"
    assert fixed_prefix("/lustre/{{x}}/{lfn}") == "/lustre/{x}/"
    assert fixed_prefix("{scope}/{lfn}") == ""


# -- the client: retries, backoff, fallback ---------------------------------------------------------


def _local_transfer(tmp_path: Path, data: bytes = b"0123456789", **kw: Any) -> Transfer:
    src = tmp_path / "src" / "f.root"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    return Transfer("f.root", str(src), str(tmp_path / "job" / "f.root"), IN, **kw)


def test_retries_with_doubling_backoff_then_success(tmp_path: Path) -> None:
    clock = FakeClock()
    tool = FakeTool(retryable(), retryable(), retryable(), None)
    result = client(IN, {"fake": tool}, clock, retries=3).transfer([_local_transfer(tmp_path)])[0]
    assert result.ok and result.tool == "fake" and result.attempts == 4
    assert clock.sleeps == [1.0, 2.0, 3.0]  # 1, 2, then capped at backoff_max_s
    assert result.seconds == pytest.approx(6.0)
    assert (tmp_path / "job" / "f.root").read_bytes() == b"0123456789"


def test_retries_exhausted_then_the_next_tool(tmp_path: Path) -> None:
    clock = FakeClock()
    first = FakeTool(retryable(), retryable(), retryable())
    second = FakeTool(None)
    result = client(IN, {"first": first, "second": second}, clock).transfer([_local_transfer(tmp_path)])[0]
    assert result.ok and result.tool == "second" and result.attempts == 4
    assert len(first.calls) == 3 and clock.sleeps == [1.0, 2.0]  # no pause before switching tools


def test_a_final_error_skips_the_retries(tmp_path: Path) -> None:
    clock = FakeClock()
    first, second = FakeTool(final()), FakeTool(None)
    result = client(IN, {"first": first, "second": second}, clock).transfer([_local_transfer(tmp_path)])[0]
    assert result.ok and result.tool == "second" and result.attempts == 2 and clock.sleeps == []


def test_all_tools_fail_the_diag_names_lfn_tools_and_stderr(tmp_path: Path) -> None:
    first = FakeTool(retryable(), retryable(), retryable())
    second = FakeTool(final("no such file (f.root)"))
    result = client(IN, {"xrdcp": first, "gfal": second}).transfer([_local_transfer(tmp_path)])[0]
    assert not result.ok and result.error_code == ErrorCode.NO_SUCH_FILE
    assert result.attempts == 4 and result.tool == "gfal"
    assert result.error_diag.startswith("stage-in of f.root failed: ")
    assert "xrdcp (3 attempts): network error [stderr: Run: [FATAL] Connection error]" in result.error_diag
    assert "gfal (1 attempt): no such file (f.root)" in result.error_diag
    assert result.fsize is None and result.checksum is None


def test_tools_that_do_not_handle_the_transfer_are_skipped(tmp_path: Path) -> None:
    class RootOnly(FakeTool):
        def handles(self, transfer: Transfer) -> bool:
            return scheme_of(transfer.source) == "root"

    skipped, used = RootOnly(final()), FakeTool(None)
    result = client(IN, {"xrdcp": skipped, "cp": used}).transfer([_local_transfer(tmp_path)])[0]
    assert result.ok and result.tool == "cp" and skipped.calls == []


def test_no_tool_handles_the_transfer() -> None:
    class Never(FakeTool):
        def handles(self, transfer: Transfer) -> bool:
            return False

    result = client(IN, {"cp": Never()}).transfer([Transfer("f", "davs://h/f", "/tmp/x/f", IN)])[0]
    assert not result.ok and result.error_code == ErrorCode.STAGE_IN_FAILED
    assert "no copytool of the chain [cp] handles davs -> file" in result.error_diag


def test_an_unexpected_exception_in_a_tool_is_a_failed_file_not_a_crash(tmp_path: Path) -> None:
    result = client(IN, {"buggy": FakeTool(RuntimeError("boom"))}).transfer([_local_transfer(tmp_path)])[0]
    assert not result.ok and result.error_code == ErrorCode.STAGE_IN_FAILED
    assert "buggy raised RuntimeError('boom')" in result.error_diag


def test_files_move_in_order_one_result_each(tmp_path: Path) -> None:
    transfers = []
    for name in ("a", "b", "c"):
        src = tmp_path / name
        src.write_bytes(name.encode())
        transfers.append(Transfer(name, str(src), str(tmp_path / "job" / name), IN))
    tool = FakeTool(None, final(), None)
    results = client(IN, {"t": tool}).transfer(transfers)
    assert [(r.transfer.lfn, r.ok) for r in results] == [("a", True), ("b", False), ("c", True)]


def test_timeout_grows_with_the_size(tmp_path: Path) -> None:
    tool = FakeTool(None)
    transfer = _local_transfer(tmp_path, fsize=10)
    staging = client(IN, {"t": tool}, timeout_s=60.0, timeout_per_gb_s=300.0)
    assert staging.timeout_for(dataclass_replace(transfer, fsize=2_000_000_000)) == pytest.approx(660.0)
    assert staging.timeout_for(dataclass_replace(transfer, fsize=None)) == 60.0
    staging.transfer([transfer])
    assert tool.calls[0][1] == pytest.approx(60.0 + 300.0 * 10 / 1e9)


def dataclass_replace(transfer: Transfer, **changes: Any) -> Transfer:
    import dataclasses

    return dataclasses.replace(transfer, **changes)


@pytest.mark.parametrize(("direction", "code"), [(IN, 1151), (OUT, 1152)])
def test_timeouts_from_the_runner(tmp_path: Path, direction: Direction, code: int) -> None:
    calls: list[float] = []

    def run(argv: Sequence[str], timeout_s: float = 60.0, env: Any = None, cwd: Any = None) -> CommandResult:
        calls.append(timeout_s)
        return CommandResult(tuple(argv), 124, "", f"xrdcp: timed out after {timeout_s:g} s")

    clock = FakeClock()
    local = tmp_path / "f.root"
    local.write_bytes(b"x" * 100)
    if direction is IN:
        transfer = Transfer("f.root", f"{ROOT}/f.root", str(tmp_path / "job" / "f.root"), IN, fsize=100)
    else:
        transfer = Transfer("f.root", str(local), f"{ROOT}/f.root", OUT)
    staging = StagingClient(settings(), direction, ["xrdcp"], run=run, sleep=clock.sleep, clock=clock, env={})
    result = staging.transfer([transfer])[0]
    assert not result.ok and result.error_code == code and result.attempts == 3
    assert clock.sleeps == [1.0, 2.0]
    assert calls == [pytest.approx(10.0 + 300.0 * 100 / 1e9)] * 3
    assert "xrdcp (3 attempts): xrdcp timed out after" in result.error_diag


# -- verification -------------------------------------------------------------------------------------


def test_stage_in_checksum_mismatch_is_1171_and_removes_the_bad_copy(tmp_path: Path) -> None:
    transfer = _local_transfer(tmp_path, checksum=adler(b"something else"))
    result = StagingClient(settings(), IN, ["cp"]).transfer([transfer])[0]
    assert not result.ok and result.error_code == ErrorCode.STAGE_IN_CHECKSUM_MISMATCH
    assert "checksum mismatch" in result.error_diag and "f.root" in result.error_diag
    assert not (tmp_path / "job" / "f.root").exists()
    assert (tmp_path / "src" / "f.root").exists()
    assert result.attempts == 1  # not retried: the same bytes would arrive again


def test_stage_in_md5_is_verified(tmp_path: Path) -> None:
    data = b"md5 checked"
    good = Checksum(ChecksumAlgorithm.MD5, hashlib.md5(data).hexdigest())
    result = StagingClient(settings(), IN, ["cp"]).transfer([_local_transfer(tmp_path, data, checksum=good)])[
        0
    ]
    assert result.ok and result.checksum == good and result.fsize == len(data)


def test_stage_in_size_mismatch_is_a_failure_and_the_copy_is_removed(tmp_path: Path) -> None:
    tool = FakeTool(b"short", b"short", b"short")
    transfer = _local_transfer(tmp_path, fsize=10)
    result = client(IN, {"t": tool}).transfer([transfer])[0]
    assert not result.ok and result.error_code == ErrorCode.STAGE_IN_FAILED
    assert "size mismatch" in result.error_diag and "5 bytes, expected 10" in result.error_diag
    assert result.attempts == 3  # a truncated copy is worth another try
    assert not (tmp_path / "job" / "f.root").exists()


def test_stage_in_without_expectations_reports_the_size(tmp_path: Path) -> None:
    result = StagingClient(settings(), IN, ["cp"]).transfer([_local_transfer(tmp_path)])[0]
    assert result.ok and result.fsize == 10 and result.checksum is None and result.tool == "cp"


def test_a_tool_claiming_success_without_a_file(tmp_path: Path) -> None:
    class Liar(FakeTool):
        def copy(self, transfer: Transfer, timeout_s: float) -> Checksum | None:
            self.calls.append((transfer, timeout_s))
            return None

    result = client(IN, {"liar": Liar()}).transfer([_local_transfer(tmp_path)])[0]
    assert not result.ok and "reported success but" in result.error_diag


def test_failed_stage_in_leaves_no_partial_file(tmp_path: Path) -> None:
    class Partial(FakeTool):
        def copy(self, transfer: Transfer, timeout_s: float) -> Checksum | None:
            Path(transfer.destination).write_bytes(b"half")
            raise final("broken pipe", ErrorCode.STAGE_IN_FAILED)

    result = client(IN, {"p": Partial()}).transfer([Transfer("f", f"{ROOT}/f", str(tmp_path / "f"), IN)])[0]
    assert not result.ok and not (tmp_path / "f").exists()


def test_stage_out_to_a_shared_filesystem_carries_the_adler32(tmp_path: Path) -> None:
    data = b"output bytes" * 1000
    src = tmp_path / "job" / "HITS.pool.root.1"
    src.parent.mkdir()
    src.write_bytes(data)
    transfer = Transfer(src.name, str(src), str(tmp_path / "store" / src.name), OUT)
    result = StagingClient(settings(), OUT, ["cp"]).transfer([transfer])[0]
    assert result.ok and result.checksum == adler(data) and result.fsize == len(data)
    assert result.transfer.checksum == adler(data)  # computed before the copy, handed to the tool
    assert (tmp_path / "store" / src.name).read_bytes() == data


def test_stage_out_replaces_an_existing_file_only_when_the_setting_says_so(tmp_path: Path) -> None:
    src = tmp_path / "job" / "HITS.pool.root.1"
    src.parent.mkdir()
    src.write_bytes(b"the job's output")
    store = tmp_path / "store"
    store.mkdir()
    (store / src.name).write_bytes(b"a file this job did not write")
    spec = FileSpec(lfn=src.name)
    keep = StageOutClient.from_settings(settings(stageout_destination=str(store)))
    [transfer] = keep.plan(Job(panda_id=7), [(spec, src)])
    assert not transfer.overwrite
    [result] = keep.transfer([transfer])
    assert not result.ok and result.error_code == ErrorCode.STAGE_OUT_FAILED and result.attempts == 1
    assert "already exists" in result.error_diag and "data.stageout_overwrite" in result.error_diag
    assert (store / src.name).read_bytes() == b"a file this job did not write"
    replace = StageOutClient.from_settings(settings(stageout_destination=str(store), stageout_overwrite=True))
    [transfer] = replace.plan(Job(panda_id=7), [(spec, src)])
    assert transfer.overwrite and replace.transfer([transfer])[0].ok
    assert (store / src.name).read_bytes() == b"the job's output"
    [again] = keep.transfer(keep.plan(Job(panda_id=7), [(spec, src)]))  # its own file: already there
    assert again.ok and again.checksum == adler(b"the job's output")


def test_stage_out_hands_the_local_checksum_to_the_tool(tmp_path: Path) -> None:
    src = tmp_path / "out.root"
    src.write_bytes(b"abc")
    tool = FakeTool(None)
    result = client(OUT, {"xrdcp": tool}).transfer([Transfer("out.root", str(src), f"{ROOT}/out.root", OUT)])[
        0
    ]
    assert result.ok and result.checksum == adler(b"abc") and result.fsize == 3
    handed = tool.calls[0][0]
    assert handed.checksum == adler(b"abc") and handed.fsize == 3


def test_stage_out_checksum_mismatch_reported_by_the_tool_is_1172(tmp_path: Path) -> None:
    src = tmp_path / "out.root"
    src.write_bytes(b"abc")
    tool = FakeTool(None, None, None, confirm=Checksum(AD, "deadbeef"))
    result = client(OUT, {"t": tool}).transfer([Transfer("out.root", str(src), f"{ROOT}/out.root", OUT)])[0]
    assert not result.ok and result.error_code == ErrorCode.STAGE_OUT_CHECKSUM_MISMATCH
    assert "deadbeef" in result.error_diag


def test_stage_out_of_a_file_that_differs_from_its_declared_checksum_is_1172(tmp_path: Path) -> None:
    src = tmp_path / "out.root"
    src.write_bytes(b"abc")
    tool = FakeTool(None)
    transfer = Transfer("out.root", str(src), f"{ROOT}/out.root", OUT, checksum=Checksum(AD, "00000001"))
    result = client(OUT, {"t": tool}).transfer([transfer])[0]
    assert not result.ok and result.error_code == ErrorCode.STAGE_OUT_CHECKSUM_MISMATCH
    assert tool.calls == []  # never sent


def test_stage_out_of_a_missing_output_is_1165(tmp_path: Path) -> None:
    transfer = Transfer("gone.root", str(tmp_path / "gone.root"), f"{ROOT}/gone.root", OUT)
    result = client(OUT, {"t": FakeTool()}).transfer([transfer])[0]
    assert not result.ok and result.error_code == ErrorCode.MISSING_OUTPUT_FILE
    assert "gone.root" in result.error_diag


def test_stage_out_checksum_mismatch_on_a_shared_filesystem_is_1172(tmp_path: Path) -> None:
    src = tmp_path / "out.root"
    src.write_bytes(b"the real bytes")
    tool = FakeTool(b"the fake bytes")  # same size, other bytes
    result = client(OUT, {"t": tool}).transfer(
        [Transfer("out.root", str(src), str(tmp_path / "s" / "o"), OUT)]
    )[0]
    assert not result.ok and result.error_code == ErrorCode.STAGE_OUT_CHECKSUM_MISMATCH
    assert not (tmp_path / "s" / "o").exists() and src.exists()


def test_a_bad_copy_is_kept_when_it_is_the_only_copy(tmp_path: Path) -> None:
    class Mover(FakeTool):
        def copy(self, transfer: Transfer, timeout_s: float) -> Checksum | None:
            Path(transfer.destination).write_bytes(b"mangled")
            Path(transfer.source).unlink()
            return None

    transfer = _local_transfer(tmp_path, checksum=adler(b"0123456789"))
    result = client(IN, {"mv": Mover()}).transfer([transfer])[0]
    assert not result.ok and result.error_code == ErrorCode.STAGE_IN_CHECKSUM_MISMATCH
    assert (tmp_path / "job" / "f.root").read_bytes() == b"mangled"


def test_unknown_tool_names_fail_at_construction() -> None:
    with pytest.raises(PluginError, match="no copytools plugin named 'scp'"):
        StagingClient(settings(), IN, ["cp", "scp"])


def test_the_real_tool_chain_loads_by_name(tmp_path: Path) -> None:
    staging = StagingClient(settings(), IN, split_list(" cp , symlink,"))
    assert list(staging.tools) == ["cp", "symlink"]
    result = staging.transfer([_local_transfer(tmp_path)])[0]
    assert result.ok and result.tool == "cp"


def test_subclasses_fix_their_direction() -> None:
    with pytest.raises(ValueError, match="StageInClient is for direction in"):
        StageInClient(settings(), OUT, ["cp"])


# -- plans ---------------------------------------------------------------------------------------------


def _job(*inputs: FileSpec) -> Job:
    return Job(panda_id=4242, input_files=inputs)


def test_stage_in_plan_honours_harvester_links_and_the_top(tmp_path: Path) -> None:
    job_dir, top, shared = tmp_path / "4242", tmp_path, tmp_path / "shared"
    job_dir.mkdir()
    shared.mkdir()
    (job_dir / "in.file").write_bytes(b"1")
    (shared / "linked").write_bytes(b"2")
    (job_dir / "linked").symlink_to(shared / "linked")  # as Harvester links inputs in
    (top / "at.top").write_bytes(b"3")
    (job_dir / "dangling").symlink_to(shared / "nowhere")
    specs = [FileSpec(lfn=n, scope="mc23", fsize=5, checksum=Checksum(AD, "00000007")) for n in
             ("in.file", "linked", "at.top", "dangling", "missing")]  # fmt: skip
    staging = StageInClient.from_settings(settings(stagein_source="root://se//store/{scope}"))
    plan = staging.plan(_job(*specs), job_dir, top=top)
    assert [t.lfn for t in plan] == ["dangling", "missing"]
    assert plan[1] == Transfer(
        "missing",
        "root://se//store/mc23/missing",
        str(job_dir / "missing"),
        IN,
        fsize=5,
        checksum=Checksum(AD, "00000007"),
    )
    assert [t.lfn for t in staging.plan(_job(*specs), job_dir)] == ["at.top", "dangling", "missing"]


def test_stage_in_plan_without_a_source_is_1103(tmp_path: Path) -> None:
    staging = StageInClient.from_settings(settings())
    with pytest.raises(StagingError) as info:
        staging.plan(_job(FileSpec(lfn="EVNT.1")), tmp_path)
    assert info.value.code == ErrorCode.NO_SUCH_FILE
    assert "EVNT.1" in info.value.message and "data.stagein_source is empty" in info.value.message


def test_stage_in_plan_with_a_template_missing_a_field_is_1099(tmp_path: Path) -> None:
    staging = StageInClient.from_settings(settings(stagein_source="/x/{scope}"))
    with pytest.raises(StagingError) as info:
        staging.plan(_job(FileSpec(lfn="EVNT.1")), tmp_path)
    assert info.value.code == ErrorCode.STAGE_IN_FAILED and "scope of EVNT.1" in info.value.message


@pytest.mark.parametrize("lfn", ["../escape", "a/b", "..", "/etc/passwd"])
def test_stage_in_plan_refuses_names_that_leave_the_job_directory(tmp_path: Path, lfn: str) -> None:
    staging = StageInClient.from_settings(settings(stagein_source="/x"))
    with pytest.raises(StagingError, match="not a plain file name"):
        staging.plan(_job(FileSpec(lfn=lfn)), tmp_path)


def test_stage_in_client_uses_the_stagein_chain() -> None:
    staging = StageInClient.from_settings(settings(stagein_tools=("symlink", "cp")))
    assert list(staging.tools) == ["symlink", "cp"] and staging.direction is IN


def test_stage_out_clients_for_outputs_and_log() -> None:
    data = settings(stageout_tools=("xrdcp", "cp"), stageout_destination="/store/{lfn}")
    outputs = StageOutClient.from_settings(data)
    log = StageOutClient.from_settings(data, log=True)
    assert list(outputs.tools) == list(log.tools) == ["xrdcp", "cp"]
    assert outputs.destination == log.destination == "/store/{lfn}" and outputs.enabled
    both = settings(stageout_destination="/store", log_tools=("cp",), log_destination="/logs/{panda_id}")
    log = StageOutClient.from_settings(both, log=True)
    assert list(log.tools) == ["cp"] and log.destination == "/logs/{panda_id}"
    assert not StageOutClient.from_settings(settings()).enabled


def test_stage_out_plan(tmp_path: Path) -> None:
    staging = StageOutClient.from_settings(settings(stageout_destination="rucio://{endpoint}/{scope}:{lfn}"))
    spec = FileSpec(lfn="HITS.1", scope="mc23", ddm_endpoint="SITE_DATADISK", guid="g-1")
    plan = staging.plan(Job(panda_id=7), [(spec, tmp_path / "HITS.1")])
    assert plan == [
        Transfer("HITS.1", str(tmp_path / "HITS.1"), "rucio://SITE_DATADISK/mc23:HITS.1", OUT, guid="g-1")
    ]
    with pytest.raises(StagingError) as info:
        staging.plan(Job(panda_id=7), [(FileSpec(lfn="HITS.2"), tmp_path / "HITS.2")])
    assert info.value.code == ErrorCode.STAGE_OUT_FAILED and "HITS.2" in info.value.message


def test_stage_out_plan_without_a_destination(tmp_path: Path) -> None:
    with pytest.raises(StagingError, match="no stage-out destination") as info:
        StageOutClient.from_settings(settings()).plan(Job(panda_id=7), [(FileSpec(lfn="x"), tmp_path / "x")])
    assert info.value.code == ErrorCode.STAGE_OUT_FAILED


# -- async stager -----------------------------------------------------------------------------------


class GatedClient:
    """Stands in for a StagingClient: each batch waits for its gate, then succeeds (or raises)."""

    def __init__(self, fail: bool = False) -> None:
        self.gate = threading.Event()
        self.ended = threading.Event()
        self.fail = fail

    def transfer(self, transfers: Sequence[Transfer]) -> list[TransferResult]:
        self.gate.wait(10)
        self.ended.set()
        if self.fail:
            raise RuntimeError("stager bug")
        return [TransferResult(t, ok=True, tool="fake", attempts=1) for t in transfers]


def _wait_for(stager: AsyncStager, count: int) -> list[Any]:
    done: list[Any] = []
    deadline = time.monotonic() + 10
    while len(done) < count and time.monotonic() < deadline:
        done += stager.poll()
        time.sleep(0.01)
    return done


def test_async_stager_returns_every_batch_and_never_blocks() -> None:
    stager = AsyncStager(2)
    clients = [GatedClient() for _ in range(3)]
    for i, c in enumerate(clients):
        stager.submit(("job", i), c, [Transfer(f"f{i}", "/a", "/b", IN)])  # type: ignore[arg-type]
    assert stager.poll() == [] and stager.pending == 3
    # submit and poll came back while every transfer still waited at its gate: they never waited on one
    assert not any(c.ended.is_set() for c in clients)
    for c in clients:
        c.gate.set()
    done = _wait_for(stager, 3)
    assert sorted(key for key, _ in done) == [("job", 0), ("job", 1), ("job", 2)]
    assert all(len(results) == 1 and results[0].ok for _, results in done)
    assert stager.pending == 0 and stager.poll() == []
    stager.close()


def test_async_stager_turns_an_exception_into_failed_results() -> None:
    stager = AsyncStager(1)
    bad = GatedClient(fail=True)
    bad.gate.set()
    transfers = [Transfer("a", "/a", "root://h//a", OUT), Transfer("b", "/b", "root://h//b", OUT)]
    stager.submit("job-9", bad, transfers)  # type: ignore[arg-type]
    [(key, results)] = _wait_for(stager, 1)
    assert key == "job-9" and [r.transfer.lfn for r in results] == ["a", "b"]
    assert all(not r.ok and r.error_code == ErrorCode.STAGE_OUT_FAILED for r in results)
    assert "stager bug" in results[0].error_diag and "a" in results[0].error_diag
    stager.close()


def test_async_stager_close_without_waiting_cancels_queued_batches() -> None:
    stager = AsyncStager(1)
    running, queued = GatedClient(), GatedClient()
    stager.submit("running", running, [Transfer("r", "/a", "/b", IN)])  # type: ignore[arg-type]
    stager.submit("queued", queued, [Transfer("q", "/a", "/b", IN)])  # type: ignore[arg-type]
    time.sleep(0.05)
    stager.close(wait=False)
    running.gate.set()
    done = dict(_wait_for(stager, 2))
    assert done["running"][0].ok
    assert not done["queued"][0].ok and done["queued"][0].error_code == ErrorCode.STAGE_IN_FAILED
    with pytest.raises(RuntimeError, match="closed"):
        stager.submit("late", queued, [])  # type: ignore[arg-type]


def test_async_stager_with_a_real_client(tmp_path: Path) -> None:
    stager = AsyncStager(2)
    staging = StagingClient(settings(), IN, ["cp"])
    stager.submit(1, staging, [_local_transfer(tmp_path)])
    [(key, [result])] = _wait_for(stager, 1)
    assert key == 1 and result.ok
    stager.close()


def test_async_stager_needs_a_worker() -> None:
    with pytest.raises(ValueError):
        AsyncStager(0)


# -- checksums -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 7, 50_000])
def test_checksums_stream_through_small_buffers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(checksums, "BUFFER_SIZE", 4096)  # forces the pipelined reader for the larger files
    data = bytes(range(256)) * (size // 256 + 1)
    path = tmp_path / "f"
    path.write_bytes(data[:size])
    assert adler32_of_file(path) == f"{zlib.adler32(data[:size]) & 0xFFFFFFFF:08x}"
    assert md5_of_file(path) == hashlib.md5(data[:size]).hexdigest()
    assert checksum_of_file(path, AD) == adler(data[:size])
    assert checksum_of_file(str(path), ChecksumAlgorithm.MD5).value == hashlib.md5(data[:size]).hexdigest()


def test_checksum_errors_stop_the_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checksums, "BUFFER_SIZE", 4096)
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100_000)
    seen: list[int] = []

    def update(block: memoryview) -> None:
        seen.append(len(block))
        if len(seen) == 2:
            raise ValueError("hash failed")

    with pytest.raises(ValueError, match="hash failed"):
        checksums._stream(path, update)
    assert not any(t.name == "hpcpilot-checksum-reader" for t in threading.enumerate())
    with pytest.raises(FileNotFoundError):
        adler32_of_file(tmp_path / "missing")


def test_a_dangling_link_at_the_destination_is_replaced_not_written_through(tmp_path: Path) -> None:
    transfer = _local_transfer(tmp_path)
    Path(transfer.destination).parent.mkdir()
    Path(transfer.destination).symlink_to(tmp_path / "elsewhere")
    result = client(IN, {"t": FakeTool(None)}).transfer([transfer])[0]
    assert result.ok and not Path(transfer.destination).is_symlink()
    assert not (tmp_path / "elsewhere").exists()
