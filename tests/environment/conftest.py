"""Real module tools and container runtimes (installed by ci/install-environment.sh).

Each fixture skips its tests on a developer machine that lacks the tool and fails them in CI
(``CI=true``), through `tests.conftest.need`. Images the tests import into podman get a tag of their
own (``localhost/hpcpilot-test-<random>``) and are removed at the end of the session; nothing else in
podman's storage is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.conftest import need

LMOD = "/usr/share/lmod/lmod/libexec/lmod"
#: The Debian rootfs with python3 that ci/install-environment.sh builds once.
CACHE = Path(os.environ.get("HPCPILOT_CI_CACHE", "/var/cache/hpcpilot-ci"))
PYTHON_ROOTFS = CACHE / "bookworm-python"
#: What podman needs on this kind of machine (INFRA.md, "Containers"): runc, not crun, and ulimits.
PODMAN_OPTIONS = "--runtime /usr/sbin/runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
#: Only the image the pilot-in-a-container test builds has this file (ci/install-environment.sh).
IMAGE_MARKER = "/etc/hpcpilot-image"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "containers: runs payloads in real containers (ch-run, podman)")


def run(argv: Sequence[str], *, timeout: float = 120, stdin: bytes | None = None) -> str:
    """Run a setup command; its stdout, or an error naming the command and its stderr."""
    done = subprocess.run(list(argv), input=stdin, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return done.stdout.decode()


@pytest.fixture(scope="session")
def lmod() -> str:
    """Lmod's command (Debian's ``lmod`` package)."""
    need(os.access(LMOD, os.X_OK), f"Lmod ({LMOD}; bash ci/install-environment.sh)")
    return LMOD


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 MB directory image: static busybox with its applets, /etc/passwd, mount points."""
    busybox = Path("/bin/busybox")
    need(busybox.exists(), "busybox-static (bash ci/install-environment.sh)")
    root = tmp_path_factory.mktemp("busybox-rootfs")
    for sub in ("bin", "etc", "tmp", "proc", "sys", "dev", "mnt", "run", "root", "home"):
        (root / sub).mkdir()
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in run([str(busybox), "--list"]).split():
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "etc" / "hpcpilot-busybox").write_text("busybox image\n")
    return root


def make_bind_target(rootfs: Path, path: Path) -> None:
    """Create ``path`` inside a directory image (ch-run binds only onto directories that exist)."""
    (rootfs / str(path).lstrip("/")).mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def ch_run() -> str:
    """``ch-run`` (Debian's ``charliecloud`` 0.31)."""
    found = shutil.which("ch-run")
    need(found is not None, "ch-run (charliecloud; bash ci/install-environment.sh)")
    assert found is not None
    return found


class Podman:
    """Imports rootfs trees as images under tags of its own and removes exactly those."""

    def __init__(self, program: str) -> None:
        self.program = program
        self.prefix = f"localhost/hpcpilot-test-{uuid.uuid4().hex[:10]}"
        self.tags: list[str] = []

    def import_tree(self, tree: Path, name: str, timeout: float = 300) -> str:
        """``tar -C TREE -c . | podman import - TAG``; the tag."""
        tag = f"{self.prefix}:{name}"
        tar = subprocess.Popen(["tar", "-C", str(tree), "-c", "."], stdout=subprocess.PIPE)
        try:
            done = subprocess.run(
                [self.program, "import", "-q", "-", tag],
                stdin=tar.stdout,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait(timeout=60)
        if done.returncode != 0 or tar.returncode != 0:
            raise RuntimeError(f"podman import of {tree} failed: {done.stderr.decode()[-2000:]}")
        self.tags.append(tag)
        return tag

    def remove_all(self) -> None:
        """Remove the images this session imported (and only them)."""
        if self.tags:
            subprocess.run(
                [self.program, "rmi", "-f", *self.tags], capture_output=True, timeout=120, check=False
            )
            self.tags.clear()


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    """Podman as root with runc (INFRA.md: the only setup that works here)."""
    found = shutil.which("podman")
    need(found is not None, "podman (bash ci/install-environment.sh)")
    need(os.geteuid() == 0, "root for podman (it works here only as root)")
    need(os.access("/usr/sbin/runc", os.X_OK), "runc (bash ci/install-environment.sh)")
    assert found is not None
    helper = Podman(found)
    yield helper
    helper.remove_all()


@pytest.fixture(scope="session")
def busybox_image(podman: Podman, busybox_rootfs: Path) -> str:
    """The busybox tree as a podman image."""
    return podman.import_tree(busybox_rootfs, "busybox")


@pytest.fixture(scope="session")
def python_image(podman: Podman) -> str:
    """The Debian bookworm rootfs with python3 (built once by ci/install-environment.sh), imported."""
    complete = PYTHON_ROOTFS.with_name(PYTHON_ROOTFS.name + ".complete")
    need(complete.exists(), f"the Debian rootfs {PYTHON_ROOTFS} (bash ci/install-environment.sh)")
    return podman.import_tree(PYTHON_ROOTFS, "bookworm-python")
