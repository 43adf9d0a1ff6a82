"""A real xrootd server on a free loopback port, for the data-movement tests.

The session fixture starts ``xrootd`` in the foreground in its own process group (stdio to a log file),
exporting ``/store`` (read-write) and ``/readonly`` (``r/o``) with adler32 checksums, and stops that
group at the end. xrootd refuses to run as root: as root it runs with ``-R nobody`` in a directory that
belongs to nobody. Missing xrootd skips the tests on a developer's machine and fails them in CI
(``CI=true``); ``ci/install-data.sh`` installs it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import need

START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Xrootd:
    """A running server: its ``root://`` base URL, its data directory and port."""

    url: str
    data: Path
    port: int

    def path(self, name: str) -> Path:
        """Where the server keeps ``/store/<name>``."""
        return self.data / "store" / name


def free_port() -> int:
    """A TCP port nothing listens on now (bind to 0, read, close)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"xrootd exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(
        f"xrootd did not listen on {port} within {START_TIMEOUT_S:.0f}s:\n{log.read_text()[-2000:]}"
    )


@pytest.fixture(scope="session")
def xrootd() -> Iterator[Xrootd]:
    """A local xrootd for the whole session (see the module's notes)."""
    need(
        shutil.which("xrootd") is not None and shutil.which("xrdcp") is not None,
        "xrootd (ci/install-data.sh)",
    )
    base = Path(tempfile.mkdtemp(prefix="hpcpilot-xrootd-"))  # under /tmp: reachable by user nobody
    base.chmod(0o755)
    data, admin = base / "data", base / "admin"
    for directory in (data / "store", data / "readonly", admin):
        directory.mkdir(parents=True)
    port = free_port()
    config = base / "xrootd.cfg"
    config.write_text(
        f"xrd.port {port}\n"
        f"oss.localroot {data}\n"
        "all.export /store\n"
        "all.export /readonly r/o\n"
        "xrootd.chksum adler32\n"
        f"all.adminpath {admin}\n"
        f"all.pidpath {admin}\n"
    )
    argv = ["xrootd", "-c", str(config), "-n", f"hpcpilot{port}"]
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for path in [base, *base.rglob("*")]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        argv[1:1] = ["-R", "nobody"]
    log = base / "xrootd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_listening(port, proc, log)
        yield Xrootd(url=f"root://127.0.0.1:{port}", data=data, port=port)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


def gfal_works() -> bool:
    """Whether ``gfal-copy`` runs here with its xrootd plugin (gfal2-util and gfal2-plugin-xrootd)."""
    if shutil.which("gfal-copy") is None:
        return False
    env = dict(os.environ, GFAL_PYTHONBIN=os.environ.get("GFAL_PYTHONBIN", "/usr/bin/python3"))
    try:
        out = subprocess.run(
            ["gfal-copy", "--version"], capture_output=True, text=True, env=env, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "xrootd" in out.stdout + out.stderr
