"""Copytools: golden argv, error classification on recorded real output, local tools, conformance."""

from __future__ import annotations

import errno
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.data.copytools.base import Copytool, Failure, local_path, scheme_of
from hpcpilot.data.copytools.gfal import GfalCopytool, gfal_environment
from hpcpilot.data.copytools.local import CpCopytool, MvCopytool, SymlinkCopytool
from hpcpilot.data.copytools.rucio import RucioCopytool, parse_location
from hpcpilot.data.copytools.xrdcp import XrdcpCopytool, printed_checksum, xrd_environment
from hpcpilot.data.transfer import Direction, Transfer
from hpcpilot.model.errors import ErrorCode, StagingError
from hpcpilot.model.job import Checksum, ChecksumAlgorithm
from hpcpilot.plugins import load_plugin, plugin_names
from hpcpilot.runtime.commands import CommandResult

DATA = Path(__file__).resolve().parent.parent / "data"
AD = ChecksumAlgorithm.ADLER32
IN, OUT = Direction.IN, Direction.OUT


# -- recordings ---------------------------------------------------------------------------------


def recording(tool: str, name: str) -> CommandResult:
    """A recorded run: ``$ command`` line, stderr, ``[exit status N]``."""
    lines = (DATA / tool / f"{name}.txt").read_text().splitlines()
    assert lines[0].startswith("$ ") and lines[-1].startswith("[exit status ")
    argv = tuple(shlex.split(lines[0][2:]))
    status = int(lines[-1].removeprefix("[exit status ").rstrip("]"))
    stderr = "".join(f"{line}\n" for line in lines[1:-1])
    return CommandResult(argv, status, "", stderr)


class Replay:
    """A runner that returns one recorded result and remembers how it was called."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, argv: Sequence[str], timeout_s: float = 60.0, env: Any = None, cwd: Any = None
    ) -> CommandResult:
        self.calls.append({"argv": list(argv), "timeout_s": timeout_s, "env": env})
        return CommandResult(tuple(argv), self.result.returncode, self.result.stdout, self.result.stderr)


# -- shared helpers of the base ------------------------------------------------------------------


def test_scheme_and_local_path() -> None:
    assert scheme_of("/a/b") == "file"
    assert scheme_of("file:///a/b") == "file"
    assert scheme_of("root://h:1094//a") == "root"
    assert scheme_of("rucio://SITE/scope:name") == "rucio"
    assert local_path("file:///a/b%20c") == "/a/b c"
    assert local_path("/a/b") == "/a/b"


@pytest.mark.parametrize(
    ("failure", "direction", "code", "retryable"),
    [
        (Failure.CHECKSUM, IN, 1171, False),
        (Failure.CHECKSUM, OUT, 1172, False),
        (Failure.TIMEOUT, IN, 1151, True),
        (Failure.TIMEOUT, OUT, 1152, True),
        (Failure.MISSING, OUT, 1103, False),
        (Failure.NO_REPLICA, IN, 1100, False),
        (Failure.AUTH, IN, 1163, False),
        (Failure.NO_SPACE, IN, 1098, False),
        (Failure.NO_SPACE, OUT, 1137, False),
        (Failure.DENIED, IN, 1099, False),
        (Failure.NETWORK, OUT, 1137, True),
        (Failure.NOT_INSTALLED, IN, 1099, False),
        (Failure.OTHER, IN, 1099, True),
    ],
)
def test_failure_codes(failure: Failure, direction: Direction, code: int, retryable: bool) -> None:
    assert failure.code(direction) == code
    assert failure.retryable is retryable


# -- xrdcp -------------------------------------------------------------------------------------------

ROOT = "root://se.example.org:1094//atlas/store/EVNT.pool.root.1"


@pytest.mark.parametrize(
    ("transfer", "argv"),
    [
        (
            Transfer("f", ROOT, "/job/f", IN, checksum=Checksum(AD, "0a1b2c3d")),
            ["xrdcp", "--force", "--nopbar", "--cksum", "adler32:0a1b2c3d", ROOT, "/job/f"],
        ),
        (
            Transfer("f", ROOT, "file:///job/f", IN, checksum=Checksum(ChecksumAlgorithm.MD5, "0" * 32)),
            ["xrdcp", "--force", "--nopbar", "--cksum", "md5:" + "0" * 32, ROOT, "/job/f"],
        ),
        (Transfer("f", ROOT, "/job/f", IN), ["xrdcp", "--force", "--nopbar", ROOT, "/job/f"]),
        (
            Transfer("f", "/job/f", ROOT, OUT, checksum=Checksum(AD, "0a1b2c3d")),
            [
                "xrdcp",
                "--force",
                "--nopbar",
                "--cksum",
                "adler32:0a1b2c3d",
                "--posc",
                "--rm-bad-cksum",
                "/job/f",
                ROOT,
            ],
        ),
        (
            Transfer("f", "/job/f", ROOT, OUT),
            ["xrdcp", "--force", "--nopbar", "--cksum", "adler32:source", "--posc", "/job/f", ROOT],
        ),
    ],
)
def test_xrdcp_argv_golden(transfer: Transfer, argv: list[str]) -> None:
    assert XrdcpCopytool().argv(transfer) == argv


def _transfer_of(argv: Sequence[str], direction: Direction, lfn: str = "local.bin") -> Transfer:
    """The transfer a recorded xrdcp command was made for (its checksum from ``--cksum``)."""
    args = list(argv)
    checksum = None
    if "--cksum" in args:
        value = args[args.index("--cksum") + 1].split(":", 1)[1]
        checksum = None if value == "source" else Checksum(AD, value)
    return Transfer(lfn, args[-2], args[-1], direction, checksum=checksum)


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("upload_ok", OUT),
        ("upload_source_ok", OUT),
        ("download_ok", IN),
        ("download_missing", IN),
        ("upload_checksum_mismatch", OUT),
        ("download_checksum_mismatch", IN),
    ],
)
def test_xrdcp_builder_makes_the_recorded_commands(name: str, direction: Direction) -> None:
    recorded = recording("xrdcp", name)
    assert XrdcpCopytool().argv(_transfer_of(recorded.argv, direction)) == list(recorded.argv)


@pytest.mark.parametrize(
    ("name", "direction", "code", "retryable", "says"),
    [
        ("download_checksum_mismatch", IN, 1171, False, "CheckSum error"),
        ("upload_checksum_mismatch", OUT, 1172, False, "CheckSum error"),
        ("download_missing", IN, 1103, False, "[3011]"),
        ("upload_missing_source", OUT, 1103, False, "no such file"),
        ("upload_read_only", OUT, 1137, False, "read/only"),
        ("upload_not_exported", OUT, 1137, False, "disallowed"),
        ("download_permission_denied", IN, 1099, False, "permission denied"),
        ("download_refused", IN, 1099, True, "Connection error"),
        ("upload_auth_failed", OUT, 1163, False, "Auth failed"),
        ("download_timeout", IN, 1151, True, "Operation expired"),
    ],
)
def test_xrdcp_classifies_recorded_failures(
    name: str, direction: Direction, code: int, retryable: bool, says: str
) -> None:
    recorded = recording("xrdcp", name)
    assert recorded.returncode != 0
    transfer = _transfer_of(recorded.argv, direction, lfn="EVNT.pool.root.1")
    run = Replay(recorded)
    with pytest.raises(StagingError) as info:
        XrdcpCopytool(run=run, env={}).copy(transfer, 30.0)
    error = info.value
    assert (int(error.code), error.retryable) == (code, retryable)
    assert "EVNT.pool.root.1" in error.message and says in error.message
    assert error.context["exit_code"] == recorded.returncode
    assert says in error.context["stderr"]
    assert error.context["command"].startswith("xrdcp ")


def test_xrdcp_success_returns_the_verified_checksum() -> None:
    recorded = recording("xrdcp", "upload_ok")
    transfer = _transfer_of(recorded.argv, OUT)
    assert XrdcpCopytool(run=Replay(recorded), env={}).copy(transfer, 30.0) == transfer.checksum


def test_xrdcp_success_with_cksum_source_returns_the_printed_checksum() -> None:
    recorded = recording("xrdcp", "upload_source_ok")
    transfer = _transfer_of(recorded.argv, OUT)
    assert transfer.checksum is None
    printed = printed_checksum(recorded.stderr)
    assert printed is not None and printed.algorithm is AD and len(printed.value) == 8
    assert XrdcpCopytool(run=Replay(recorded), env={}).copy(transfer, 30.0) == printed


@pytest.mark.parametrize(("direction", "code"), [(IN, 1151), (OUT, 1152)])
def test_xrdcp_runner_timeout(direction: Direction, code: int) -> None:
    run = Replay(CommandResult((), 124, "", "xrdcp: timed out after 42 s"))
    transfer = Transfer("f", ROOT, "/job/f", IN) if direction is IN else Transfer("f", "/job/f", ROOT, OUT)
    with pytest.raises(StagingError) as info:
        XrdcpCopytool(run=run, env={}).copy(transfer, 42.0)
    assert int(info.value.code) == code and info.value.retryable
    assert "42 s" in info.value.message
    assert run.calls[0]["timeout_s"] == 42.0


def test_xrdcp_not_installed() -> None:
    run = Replay(CommandResult((), 127, "", "xrdcp: command not found"))
    with pytest.raises(StagingError) as info:
        XrdcpCopytool(run=run, env={}).copy(Transfer("f", ROOT, "/job/f", IN), 5.0)
    assert int(info.value.code) == 1099 and not info.value.retryable


def test_xrdcp_environment_defaults_only_when_unset() -> None:
    assert xrd_environment({"PATH": "/bin"}) == {
        "PATH": "/bin",
        "XRD_CONNECTIONRETRY": "1",
        "XRD_CONNECTIONWINDOW": "2",
    }
    assert xrd_environment({"XRD_CONNECTIONRETRY": "5"})["XRD_CONNECTIONRETRY"] == "5"
    run = Replay(recording("xrdcp", "download_ok"))
    XrdcpCopytool(run=run, env={"XRD_CONNECTIONWINDOW": "30"}).copy(Transfer("f", ROOT, "/job/f", IN), 5.0)
    assert run.calls[0]["env"] == {"XRD_CONNECTIONWINDOW": "30", "XRD_CONNECTIONRETRY": "1"}


def test_xrdcp_handles_only_transfers_with_a_remote_end() -> None:
    tool = XrdcpCopytool()
    assert tool.handles(Transfer("f", ROOT, "/job/f", IN))
    assert tool.handles(Transfer("f", "/job/f", "roots://h//x", OUT))
    assert not tool.handles(Transfer("f", "/a", "/b", IN))
    assert not tool.handles(Transfer("f", "davs://h/x", "/b", IN))
    assert tool.network


# -- gfal --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transfer", "timeout_s", "argv"),
    [
        (
            Transfer("f", ROOT, "/job/f", IN, checksum=Checksum(AD, "0a1b2c3d")),
            60.0,
            ["gfal-copy", "-f", "-p", "-K", "adler32:0a1b2c3d", "-t", "60", ROOT, "file:///job/f"],
        ),
        (
            Transfer("f", ROOT, "/job/f", IN, checksum=Checksum(ChecksumAlgorithm.MD5, "0" * 32)),
            12.2,
            ["gfal-copy", "-f", "-p", "-K", "adler32", "-t", "13", ROOT, "file:///job/f"],
        ),
        (
            Transfer("f", "file:///job/f", "davs://se:443/store/f", OUT, checksum=Checksum(AD, "00000001")),
            600.0,
            [
                "gfal-copy",
                "-f",
                "-p",
                "-K",
                "adler32:00000001",
                "-t",
                "600",
                "file:///job/f",
                "davs://se:443/store/f",
            ],
        ),
    ],
)
def test_gfal_argv_golden(transfer: Transfer, timeout_s: float, argv: list[str]) -> None:
    assert GfalCopytool().argv(transfer, timeout_s) == argv


def test_gfal_relative_path_becomes_an_absolute_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = GfalCopytool().argv(Transfer("f", "out.root", ROOT, OUT), 10)
    assert argv[-2] == f"file://{tmp_path}/out.root"


def _gfal_transfer_of(argv: Sequence[str], direction: Direction, lfn: str = "local.bin") -> Transfer:
    args = list(argv)
    value = args[args.index("-K") + 1]
    checksum = Checksum(AD, value.split(":", 1)[1]) if ":" in value else None
    return Transfer(lfn, args[-2], args[-1], direction, checksum=checksum)


@pytest.mark.parametrize(
    ("name", "direction"),
    [("upload_ok", OUT), ("download_ok", IN), ("download_missing", IN), ("upload_checksum_mismatch", OUT)],
)
def test_gfal_builder_makes_the_recorded_commands(name: str, direction: Direction) -> None:
    recorded = recording("gfal", name)
    timeout_s = float(recorded.argv[recorded.argv.index("-t") + 1])
    transfer = _gfal_transfer_of(recorded.argv, direction)
    assert GfalCopytool().argv(transfer, timeout_s) == list(recorded.argv)


@pytest.mark.parametrize(
    ("name", "direction", "code", "retryable", "says"),
    [
        ("download_checksum_mismatch", IN, 1171, False, "CheckSum error"),
        ("upload_checksum_mismatch", OUT, 1172, False, "CheckSum error"),
        ("file_checksum_mismatch", IN, 1171, False, "CHECKSUM MISMATCH"),
        ("download_missing", IN, 1103, False, "No such file"),
        ("upload_missing_source", OUT, 1103, False, "No such file"),
        ("upload_read_only", OUT, 1137, False, "read/only"),
        ("download_permission_denied", IN, 1099, False, "permission denied"),
        ("download_refused", IN, 1099, True, "Connection refused"),
        ("upload_auth_failed", OUT, 1163, False, "Auth failed"),
        ("download_timeout", IN, 1151, True, "timed out"),
    ],
)
def test_gfal_classifies_recorded_failures(
    name: str, direction: Direction, code: int, retryable: bool, says: str
) -> None:
    recorded = recording("gfal", name)
    transfer = _gfal_transfer_of(recorded.argv, direction, lfn="EVNT.pool.root.1")
    with pytest.raises(StagingError) as info:
        GfalCopytool(run=Replay(recorded), env={}).copy(transfer, 60.0)
    error = info.value
    assert (int(error.code), error.retryable) == (code, retryable)
    assert "EVNT.pool.root.1" in error.message and says in error.message
    assert error.context["exit_code"] == recorded.returncode


def test_gfal_success_and_environment() -> None:
    recorded = recording("gfal", "upload_ok")
    transfer = _gfal_transfer_of(recorded.argv, OUT)
    run = Replay(recorded)
    assert GfalCopytool(run=run, env={"PATH": "/bin"}).copy(transfer, 60.0) == transfer.checksum
    assert run.calls[0]["env"] == {
        "PATH": "/bin",
        "GFAL_PYTHONBIN": "/usr/bin/python3",
        "XRD_CONNECTIONRETRY": "1",
        "XRD_CONNECTIONWINDOW": "2",
    }
    assert run.calls[0]["timeout_s"] > 60.0  # gfal's own -t ends it first
    assert gfal_environment({"GFAL_PYTHONBIN": "/opt/py"})["GFAL_PYTHONBIN"] == "/opt/py"


def test_gfal_runner_timeout() -> None:
    run = Replay(CommandResult((), 124, "", "gfal-copy: timed out"))
    with pytest.raises(StagingError) as info:
        GfalCopytool(run=run, env={}).copy(Transfer("f", "/job/f", ROOT, OUT), 5.0)
    assert int(info.value.code) == 1152 and info.value.retryable


# -- rucio -------------------------------------------------------------------------------------------

DID = "mc23_13p6TeV:EVNT.01._000001.pool.root.1"


def test_rucio_location_parsing() -> None:
    assert parse_location(f"rucio://{DID}") == (None, "mc23_13p6TeV", "EVNT.01._000001.pool.root.1")
    assert parse_location(f"rucio:{DID}") == (None, "mc23_13p6TeV", "EVNT.01._000001.pool.root.1")
    assert parse_location("rucio://SITE_DATADISK/user.jdoe:f.1") == ("SITE_DATADISK", "user.jdoe", "f.1")
    for bad in ("rucio://nocolon", "root://h//x", "rucio://SITE/scope:", "rucio://SITE/:name"):
        with pytest.raises(ValueError):
            parse_location(bad)


@pytest.mark.parametrize(
    ("transfer", "argv"),
    [
        (
            Transfer("EVNT.01._000001.pool.root.1", f"rucio://{DID}", "/job/EVNT.01._000001.pool.root.1", IN),
            ["rucio", "download", "--dir", "/job", "--no-subdir", "--transfer-timeout", "600", DID],
        ),
        (
            Transfer("EVNT.01._000001.pool.root.1", f"rucio://SITE_DATADISK/{DID}", "/job/in/x", IN),
            [
                "rucio", "download", "--dir", "/job/in", "--no-subdir", "--rses", "SITE_DATADISK",
                "--transfer-timeout", "600", DID,
            ],
        ),
        (
            Transfer("HITS.1", "/job/HITS.1", "rucio://SITE_DATADISK/mc23:HITS.1", OUT, guid="abc-123"),
            [
                "rucio", "upload", "--rse", "SITE_DATADISK", "--scope", "mc23", "--guid", "abc-123",
                "--register-after-upload", "--transfer-timeout", "600", "/job/HITS.1",
            ],
        ),
        (
            Transfer("HITS.1", "/job/out.pool.root", "rucio://SITE_DATADISK/mc23:HITS.1", OUT),
            [
                "rucio", "upload", "--rse", "SITE_DATADISK", "--scope", "mc23", "--lfn", "HITS.1",
                "--register-after-upload", "--transfer-timeout", "600", "/job/out.pool.root",
            ],
        ),
    ],
)  # fmt: skip
def test_rucio_argv_golden(transfer: Transfer, argv: list[str]) -> None:
    assert RucioCopytool().argv(transfer, 600.0) == argv


def test_rucio_upload_needs_an_rse() -> None:
    with pytest.raises(StagingError, match="needs the RSE") as info:
        RucioCopytool().argv(Transfer("HITS.1", "/job/HITS.1", "rucio://mc23:HITS.1", OUT), 60)
    assert int(info.value.code) == 1137


@pytest.mark.parametrize(
    ("name", "direction", "code", "retryable", "says"),
    [
        ("download_did_not_found", IN, 1103, False, "Data identifier not found"),
        ("download_none_downloaded", IN, 1100, False, "None of the requested files"),
        ("download_no_source", IN, 1100, False, "None of the requested files"),
        ("download_checksum_failed", IN, 1171, False, "None of the requested files"),
        (
            "whoami_auth_failed",
            IN,
            1163,
            False,
            "Cannot authenticate. Details: userpass authentication failed",
        ),
        ("whoami_x509_failed", OUT, 1163, False, "x509 authentication failed"),
    ],
)
def test_rucio_classifies_published_failures(
    name: str, direction: Direction, code: int, retryable: bool, says: str
) -> None:
    recorded = recording("rucio", name)
    if direction is IN:
        transfer = Transfer("EVNT.1", f"rucio://{DID}", "/job/EVNT.1", IN)
    else:
        transfer = Transfer("HITS.1", "/job/HITS.1", "rucio://SITE/mc23:HITS.1", OUT)
    with pytest.raises(StagingError) as info:
        RucioCopytool(run=Replay(recorded), env={}).copy(transfer, 60.0)
    error = info.value
    assert (int(error.code), error.retryable) == (code, retryable)
    assert says in error.message


def test_rucio_upload_success_returns_the_checksum() -> None:
    run = Replay(recording("rucio", "upload_ok"))
    transfer = Transfer(
        "file1", "/job/file1", "rucio://XRD1/test:file1", OUT, checksum=Checksum(AD, "01020304")
    )
    assert RucioCopytool(run=run, env={}).copy(transfer, 60.0) == transfer.checksum
    assert run.calls[0]["env"]["RUCIO_LOGGING_FORMAT"].startswith("%(asctime)s")


def test_rucio_download_renames_to_the_destination(tmp_path: Path) -> None:
    def run(argv: Sequence[str], timeout_s: float = 60.0, env: Any = None, cwd: Any = None) -> CommandResult:
        directory = Path(argv[argv.index("--dir") + 1])
        (directory / "EVNT.1").write_bytes(b"data")  # what rucio download --no-subdir leaves
        return CommandResult(tuple(argv), 0, "", "")

    transfer = Transfer("EVNT.1", "rucio://mc23:EVNT.1", str(tmp_path / "renamed.root"), IN)
    assert RucioCopytool(run=run, env={}).copy(transfer, 60.0) is None
    assert (tmp_path / "renamed.root").read_bytes() == b"data"
    assert not (tmp_path / "EVNT.1").exists()


def test_rucio_handles_a_did_and_a_path() -> None:
    tool = RucioCopytool()
    assert tool.handles(Transfer("f", "rucio://s:f", "/job/f", IN))
    assert tool.handles(Transfer("f", "/job/f", "rucio://SITE/s:f", OUT))
    assert not tool.handles(Transfer("f", ROOT, "/job/f", IN))
    assert not tool.handles(Transfer("f", "/a", "/b", IN))


# -- local tools ------------------------------------------------------------------------------------


def _write(path: Path, data: bytes = b"payload bytes") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_cp_copies_through_a_temporary_name(tmp_path: Path) -> None:
    src = _write(tmp_path / "src" / "f.root")
    seen: list[str] = []

    def copyfile(a: str, b: str) -> None:
        seen.append(b)
        Path(b).write_bytes(Path(a).read_bytes())

    dest = tmp_path / "new" / "dir" / "f.root"
    assert CpCopytool(copyfile=copyfile).copy(Transfer("f.root", str(src), str(dest), IN), 1.0) is None
    assert dest.read_bytes() == src.read_bytes()
    assert Path(seen[0]).parent == dest.parent and Path(seen[0]).name.startswith(".f.root.")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.root"]  # no temporary file left
    assert src.exists()


def test_cp_replaces_an_existing_destination_when_told_and_accepts_file_urls(tmp_path: Path) -> None:
    src = _write(tmp_path / "a", b"new")
    dest = _write(tmp_path / "b", b"old")
    CpCopytool().copy(Transfer("b", f"file://{src}", f"file://{dest}", OUT, overwrite=True), 1.0)
    assert dest.read_bytes() == b"new"


@pytest.mark.parametrize("tool", [CpCopytool, MvCopytool, SymlinkCopytool])
def test_a_stage_out_leaves_a_file_it_did_not_write_alone(tool: type[Copytool], tmp_path: Path) -> None:
    src = _write(tmp_path / "out.h5", b"the job's output")
    victim = _write(tmp_path / "se" / "out.h5", b"someone else's file")
    with pytest.raises(StagingError) as info:
        tool().copy(Transfer("out.h5", str(src), str(victim), OUT), 1.0)
    assert int(info.value.code) == 1137 and not info.value.retryable
    assert "already exists" in info.value.message and "data.stageout_overwrite" in info.value.message
    assert victim.read_bytes() == b"someone else's file" and src.read_bytes() == b"the job's output"
    link = tmp_path / "se" / "link.h5"
    link.symlink_to(victim)  # a link at the destination is not written through either
    with pytest.raises(StagingError, match="already exists"):
        tool().copy(Transfer("link.h5", str(src), str(link), OUT), 1.0)
    assert victim.read_bytes() == b"someone else's file" and link.is_symlink()


@pytest.mark.parametrize("tool", [CpCopytool, MvCopytool])
def test_a_stage_out_accepts_its_own_earlier_copy(tool: type[Copytool], tmp_path: Path) -> None:
    src = _write(tmp_path / "out.h5", b"the job's output")
    earlier = _write(tmp_path / "se" / "out.h5", b"the job's output")  # an earlier attempt's copy
    tool().copy(Transfer("out.h5", str(src), str(earlier), OUT), 1.0)
    assert earlier.read_bytes() == b"the job's output"
    stage_in_dest = _write(tmp_path / "job" / "in.root", b"stale")
    tool().copy(Transfer("in.root", str(src), str(stage_in_dest), IN), 1.0)  # stage-in may replace
    assert stage_in_dest.read_bytes() == b"the job's output"


def test_local_tools_do_nothing_when_the_file_is_in_place(tmp_path: Path) -> None:
    src = _write(tmp_path / "f")
    for tool in (CpCopytool(), MvCopytool(), SymlinkCopytool()):
        tool.copy(Transfer("f", str(src), str(src), IN), 1.0)
        assert src.read_bytes() == b"payload bytes"


@pytest.mark.parametrize("tool", [CpCopytool, MvCopytool, SymlinkCopytool])
def test_local_tools_missing_source_is_1103(tool: type[Copytool], tmp_path: Path) -> None:
    with pytest.raises(StagingError) as info:
        tool().copy(Transfer("gone.root", str(tmp_path / "gone.root"), str(tmp_path / "x"), IN), 1.0)
    assert int(info.value.code) == 1103 and not info.value.retryable
    assert "gone.root" in info.value.message


def test_local_tool_source_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(StagingError, match="not a regular file") as info:
        CpCopytool().copy(Transfer("d", str(tmp_path / "d"), str(tmp_path / "x"), OUT), 1.0)
    assert int(info.value.code) == 1137


def _failing(number: int) -> Any:
    def copyfile(src: str, dst: str) -> None:
        Path(dst).write_bytes(b"partial")
        raise OSError(number, os.strerror(number), dst)

    return copyfile


@pytest.mark.parametrize(
    ("number", "direction", "code", "retryable"),
    [
        (errno.ENOSPC, IN, ErrorCode.NO_LOCAL_SPACE, False),
        (errno.EDQUOT, OUT, ErrorCode.NO_LOCAL_SPACE, False),
        (errno.EACCES, IN, ErrorCode.STAGE_IN_FAILED, False),
        (errno.EACCES, OUT, ErrorCode.STAGE_OUT_FAILED, False),
        (errno.EIO, OUT, ErrorCode.STAGE_OUT_FAILED, True),
    ],
)
def test_cp_maps_injected_os_errors(
    tmp_path: Path, number: int, direction: Direction, code: ErrorCode, retryable: bool
) -> None:
    src = _write(tmp_path / "f")
    dest = tmp_path / "out" / "f"
    with pytest.raises(StagingError) as info:
        CpCopytool(copyfile=_failing(number)).copy(Transfer("f", str(src), str(dest), direction), 1.0)
    assert (info.value.code, info.value.retryable) == (code, retryable)
    assert os.strerror(number) in info.value.message and "f" in info.value.message
    assert list((tmp_path / "out").iterdir()) == []  # the partial temporary file is gone


def test_mv_renames(tmp_path: Path) -> None:
    src = _write(tmp_path / "a" / "f")
    dest = tmp_path / "b" / "f"
    MvCopytool().copy(Transfer("f", str(src), str(dest), OUT), 1.0)
    assert dest.read_bytes() == b"payload bytes" and not src.exists()


def test_mv_across_filesystems_copies_then_removes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _write(tmp_path / "a" / "f")
    dest = tmp_path / "b" / "f"
    real_replace = os.replace
    calls: list[str] = []

    def replace(a: Any, b: Any) -> None:
        calls.append(str(a))
        if Path(a) == src:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(a, b)

    monkeypatch.setattr(os, "replace", replace)
    MvCopytool().copy(Transfer("f", str(src), str(dest), OUT), 1.0)
    assert dest.read_bytes() == b"payload bytes" and not src.exists()
    assert len(calls) == 2  # the failed rename, then the temporary file's


def test_symlink_links_to_the_absolute_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "shared" / "f")
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "job" / "f"
    _write(dest, b"stale")
    SymlinkCopytool().copy(Transfer("f", "shared/f", str(dest), IN), 1.0)
    assert dest.is_symlink() and os.readlink(dest) == str(tmp_path / "shared" / "f")
    assert dest.read_bytes() == b"payload bytes"


def test_symlink_failure_leaves_no_temporary_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _write(tmp_path / "f")
    dest = tmp_path / "job" / "f"

    def replace(a: Any, b: Any) -> None:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(StagingError) as info:
        SymlinkCopytool().copy(Transfer("f", str(src), str(dest), IN), 1.0)
    monkeypatch.undo()
    assert int(info.value.code) == 1099
    assert list((tmp_path / "job").iterdir()) == []


# -- conformance: every registered copytool ----------------------------------------------------------


def _example_transfer(tool: Copytool, tmp_path: Path) -> Transfer:
    """A transfer the tool handles whose local source does not exist."""
    remote = sorted(tool.schemes - {"file"})
    missing = str(tmp_path / "missing.root")
    if not remote:
        return Transfer("missing.root", missing, str(tmp_path / "dest" / "missing.root"), OUT)
    scheme = remote[0]
    url = (
        "rucio://SITE/scope:missing.root"
        if scheme == "rucio"
        else f"{scheme}://host:1094//store/missing.root"
    )
    return Transfer("missing.root", missing, url, OUT)


@pytest.mark.parametrize("name", plugin_names("copytools"))
class TestCopytoolConformance:
    def tool(self, name: str, result: CommandResult | None = None) -> Copytool:
        cls = load_plugin("copytools", name, Copytool)
        failure = result or CommandResult((), 2, "", "No such file or directory")
        return cls(run=Replay(failure), env={})

    def test_loads_as_a_copytool(self, name: str) -> None:
        assert issubclass(load_plugin("copytools", name, Copytool), Copytool)

    def test_declares_schemes_and_network(self, name: str) -> None:
        tool = self.tool(name)
        assert isinstance(tool.schemes, frozenset) and tool.schemes
        assert all(s == s.lower() and "://" not in s for s in tool.schemes)
        assert isinstance(tool.network, bool)
        assert tool.network == bool(tool.schemes - {"file"})  # a tool that reaches storage needs the network

    def test_handles_what_it_is_for(self, name: str, tmp_path: Path) -> None:
        tool = self.tool(name)
        transfer = _example_transfer(tool, tmp_path)
        assert tool.handles(transfer) is True
        assert tool.handles(Transfer("f", "gsiftp-unknown://h/x", "/y", IN)) is False

    def test_failure_is_a_staging_error_with_a_pilot_code(self, name: str, tmp_path: Path) -> None:
        tool = self.tool(name)
        transfer = _example_transfer(tool, tmp_path)
        with pytest.raises(StagingError) as info:
            tool.copy(transfer, 5.0)
        assert info.value.code in set(ErrorCode)
        assert int(info.value.code) == 1103  # the source is missing, whichever way the tool says it
        assert "missing.root" in info.value.message

    def test_timeout_from_the_runner(self, name: str, tmp_path: Path) -> None:
        tool = self.tool(name, CommandResult((), 124, "", "timed out"))
        if not tool.network:
            pytest.skip("in-process tool: no command to time out")
        transfer = _example_transfer(tool, tmp_path)
        _write(Path(transfer.source))
        with pytest.raises(StagingError) as info:
            tool.copy(transfer, 5.0)
        assert int(info.value.code) == 1152 and info.value.retryable
