"""The wheel as a site installs it: built, put into a fresh virtualenv outside the checkout, used there.

The wheel is built from a copy of the checkout's ``pyproject.toml``, ``README.md``, ``LICENSE`` and
``hpcpilot/`` (without build isolation when the test virtualenv has setuptools >= 77, so no network is
needed), and installed with ``--no-deps --no-index`` into a new virtualenv in a temporary directory. The
dependencies (PyYAML, numpy, h5py, psutil) come from the test virtualenv through a ``.pth`` file that
appends its site-packages: the new virtualenv's own site-packages comes first on ``sys.path``, so
``hpcpilot`` (and its entry points) come from the wheel, which the test asserts. Every command runs from
a temporary directory, with ``HOME`` in it (no user site files) and no ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import REPO, need, summary

pytestmark = pytest.mark.packaging

PACKAGED_SITES = sorted(p.name for p in (REPO / "hpcpilot" / "site_configs").glob("*.yaml"))
TEMPLATES = ("slurm.sh", "pbs.sh", "lsf.sh")


@dataclass(frozen=True)
class Installed:
    """The built wheel and the virtualenv it is installed in."""

    wheel: Path
    venv: Path
    site_packages: Path
    home: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def package(self) -> Path:
        return self.site_packages / "hpcpilot"


def _setuptools_builds_offline() -> bool:
    try:
        major = int(metadata.version("setuptools").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return major >= 77  # the build-system requirement of pyproject.toml


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "hpcpilot", src / "hpcpilot", ignore=shutil.ignore_patterns("__pycache__"))
    offline = _setuptools_builds_offline()
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(root / "dist"), str(src)]
    if offline:
        build[4:4] = ["--no-build-isolation", "--no-index"]
    built = _run(build, cwd=root)
    need(
        built.returncode == 0,
        f"building the wheel ({'offline' if offline else 'with build isolation'}):\n"
        f"{built.stdout[-2000:]}{built.stderr[-2000:]}",
    )
    [wheel] = sorted((root / "dist").glob("hpcpilot-*.whl"))

    venv = root / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # pip of the test virtualenv installs into the new one (pip >= 22.3: --python)
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index"]
    done = _run([*install, str(wheel)], cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root)
    site_packages = Path(purelib.stdout.strip())
    assert site_packages.is_dir() and site_packages.is_relative_to(venv)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site_packages / "zz_test_dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    home = root / "home"
    home.mkdir()
    return Installed(wheel=wheel, venv=venv, site_packages=site_packages, home=home)


HpcPilot = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def hpcpilot(installed: Installed, tmp_path: Path) -> HpcPilot:
    """Run the installed ``hpcpilot`` console script from ``tmp_path``, as a user at a site would."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HPCPILOT_", "PYTHON", "XDG_", "VIRTUAL_ENV"))
    }
    env.update(HOME=str(installed.home), PATH=f"{installed.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    env["HPCPILOT_NO_MPI"] = "1"  # world size 1: the MPI wheel's library lies in the test virtualenv

    def run(*args: str, cwd: Path | None = None, module: bool = False) -> subprocess.CompletedProcess[str]:
        exe = (
            [str(installed.python), "-m", "hpcpilot"]
            if module
            else [str(installed.venv / "bin" / "hpcpilot")]
        )
        return _run([*exe, *args], cwd=cwd or tmp_path, env=env)

    return run


def test_the_wheel_holds_the_templates_the_sites_and_the_licence(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = wheel.read(meta_name).decode()
    assert {f"hpcpilot/launchers/{t}" for t in TEMPLATES} <= names
    assert "hpcpilot/launchers/README.md" in names
    assert {
        n.removeprefix("hpcpilot/site_configs/") for n in names if n.startswith("hpcpilot/site_configs/")
    } == set(PACKAGED_SITES)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in meta
    assert "Project-URL: " in meta and "Classifier: Typing :: Typed" in meta and "Author: " in meta


def test_hpcpilot_comes_from_the_wheel(installed: Installed, tmp_path: Path) -> None:
    probe = _run(
        [str(installed.python), "-c", "import hpcpilot, yaml; print(hpcpilot.__file__)"],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(installed.home)},
    )
    assert probe.returncode == 0, probe.stderr
    location = Path(probe.stdout.strip())
    assert location.is_relative_to(installed.package), location
    assert not location.is_relative_to(REPO)


def test_plugins(hpcpilot: HpcPilot, installed: Installed) -> None:
    result = hpcpilot("plugins")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "communicators / local" in result.stdout and "batch_systems / slurm" in result.stdout


def test_config_show_for_every_packaged_site(hpcpilot: HpcPilot, installed: Installed) -> None:
    sites = hpcpilot("config", "sites")
    assert sites.returncode == 0, sites.stderr
    for file in PACKAGED_SITES:
        name = file.removesuffix(".yaml")
        path = installed.package / "site_configs" / file
        assert f"{name}  " in sites.stdout and str(path) in sites.stdout
        result = hpcpilot("config", "show", "--site", name)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        assert f"[site:{path}]" in result.stdout, name


@pytest.mark.parametrize(("system", "submitter"), [("slurm", "sbatch"), ("pbs", "qsub"), ("lsf", "bsub")])
def test_submit_dry_run(
    hpcpilot: HpcPilot, installed: Installed, tmp_path: Path, system: str, submitter: str
) -> None:
    result = hpcpilot(
        "submit", "--dry-run", "--nodes", "2", "--walltime", "1h", "--site", "slurm-generic",
        "--set", f"batch.system={system}", "--set", "batch.queue=q1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("#!/bin/bash")
    assert "-m hpcpilot launch" in result.stdout and str(tmp_path) in result.stdout
    assert "{" + "nNode}" not in result.stdout
    assert f"# submit with: {submitter}" in result.stdout or f"exec {submitter}" in result.stdout
    template = hpcpilot("submit", "--print-template", system)
    assert template.returncode == 0, template.stderr
    assert template.stdout == (installed.package / "launchers" / f"{system}.sh").read_text()


def test_the_demo_at_world_size_1_and_run_as_the_default_command(hpcpilot: HpcPilot, tmp_path: Path) -> None:
    demo = hpcpilot("demo", "--workdir", "demo", "--events", "40", "--sleep-per-event", "0")
    assert demo.returncode == 0, demo.stderr
    assert "hpcpilot summary" in demo.stdout
    assert summary(tmp_path / "demo")["ranges"]["finished"] == 4
    # the README's first example: write the job, then `python -m hpcpilot` in the work directory
    work = tmp_path / "again"
    setup = hpcpilot(
        "demo", "--workdir", str(work), "--events", "20", "--sleep-per-event", "0", "--setup-only"
    )
    assert setup.returncode == 0, setup.stderr
    run = hpcpilot(cwd=work, module=True)
    assert run.returncode == 0, run.stderr
    assert summary(work)["ranges"]["finished"] == 2
