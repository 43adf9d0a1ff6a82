"""The site search path: $HPCPILOT_SITE_PATH, $HPCPILOT_SITE_CONFIG_DIR, the user's directory, the package."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pytest

from hpcpilot.config.loader import (
    SiteFile,
    available_sites,
    find_sites,
    format_sites,
    load_config,
    packaged_site_dir,
    site_search_path,
)
from hpcpilot.model.errors import ConfigError

PACKAGED = {"aurora", "frontier", "local", "perlmutter", "polaris", "slurm-generic", "summit"}


def site(directory: Path, name: str, cores: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(f"node:\n  cores: {cores}\n")
    return path


def test_the_site_files_are_package_data() -> None:
    # on main they lay beside the package (site_configs/), which no wheel installs
    ref = resources.files("hpcpilot") / "site_configs"
    assert {p.name for p in ref.iterdir()} >= {f"{name}.yaml" for name in PACKAGED}
    assert packaged_site_dir() == Path(str(ref))


def test_packaged_sites_without_any_variable() -> None:
    assert site_search_path({}) == [site_search_path({})[-1]]
    assert site_search_path({})[-1].origin == "package"
    assert set(available_sites({})) == PACKAGED
    assert all(f.origin == "package" and f.shadowed_by is None for f in find_sites({}))


def test_search_order_and_origins(tmp_path: Path) -> None:
    first, second, legacy = tmp_path / "a", tmp_path / "b", tmp_path / "legacy"
    env = {
        "HPCPILOT_SITE_PATH": os.pathsep.join([str(first), "", str(second)]),
        "HPCPILOT_SITE_CONFIG_DIR": str(legacy),
        "HOME": str(tmp_path / "home"),
    }
    dirs = site_search_path(env)
    assert [(d.path, d.origin) for d in dirs] == [
        (first, "HPCPILOT_SITE_PATH"),
        (second, "HPCPILOT_SITE_PATH"),
        (legacy, "HPCPILOT_SITE_CONFIG_DIR"),
        (tmp_path / "home" / ".config" / "hpcpilot" / "sites", "user"),
        (packaged_site_dir(), "package"),
    ]


def test_xdg_config_home_names_the_user_directory(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert [d.path for d in site_search_path(env) if d.origin == "user"] == [
        tmp_path / "xdg" / "hpcpilot" / "sites"
    ]
    # the XDG base directory specification ignores a relative XDG_CONFIG_HOME
    env["XDG_CONFIG_HOME"] = "relative"
    assert [d.path for d in site_search_path(env) if d.origin == "user"] == [
        tmp_path / "home" / ".config" / "hpcpilot" / "sites"
    ]


def test_first_match_wins_and_the_others_are_shadowed(tmp_path: Path) -> None:
    first = site(tmp_path / "a", "local", 3)
    second = site(tmp_path / "b", "local", 4)
    user = site(tmp_path / "home" / ".config" / "hpcpilot" / "sites", "mine", 5)
    site(tmp_path / "b", "other", 6)
    env = {
        "HPCPILOT_SITE_PATH": os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]),
        "HOME": str(tmp_path / "home"),
    }
    assert load_config(site="local", env=env).settings.node.cores == 3
    assert load_config(site="mine", env=env).settings.node.cores == 5
    assert load_config(site="other", env=env).settings.node.cores == 6
    assert load_config(site="perlmutter", env=env).settings.run.communicator == "harvester"
    local = [f for f in find_sites(env) if f.name == "local"]
    assert local == [
        SiteFile("local", first, "HPCPILOT_SITE_PATH"),
        SiteFile("local", second, "HPCPILOT_SITE_PATH", shadowed_by=first),
        SiteFile("local", packaged_site_dir() / "local.yaml", "package", shadowed_by=first),
    ]
    assert SiteFile("mine", user, "user") in find_sites(env)
    assert available_sites(env) == sorted({*PACKAGED, "mine", "other"})


def test_site_path_wins_over_the_older_variable_and_the_user(tmp_path: Path) -> None:
    site(tmp_path / "path", "x", 1)
    site(tmp_path / "legacy", "x", 2)
    site(tmp_path / "home" / ".config" / "hpcpilot" / "sites", "x", 3)
    env = {"HOME": str(tmp_path / "home")}
    assert load_config(site="x", env=env).settings.node.cores == 3
    env["HPCPILOT_SITE_CONFIG_DIR"] = str(tmp_path / "legacy")
    assert load_config(site="x", env=env).settings.node.cores == 2
    env["HPCPILOT_SITE_PATH"] = str(tmp_path / "path")
    assert load_config(site="x", env=env).settings.node.cores == 1


def test_unknown_site_names_every_directory_searched(tmp_path: Path) -> None:
    env = {"HPCPILOT_SITE_PATH": str(tmp_path / "nowhere"), "HOME": str(tmp_path)}
    with pytest.raises(ConfigError) as info:
        load_config(site="nosuchsite", env=env)
    message = str(info.value)
    assert "perlmutter" in message and "local" in message
    assert f"{tmp_path / 'nowhere'} (HPCPILOT_SITE_PATH)" in message
    assert f"{packaged_site_dir()} (package)" in message


def test_format_sites_shows_origins_missing_directories_and_shadowing(tmp_path: Path) -> None:
    mine = site(tmp_path / "a", "local", 3)
    env = {"HPCPILOT_SITE_PATH": str(tmp_path / "a"), "HOME": str(tmp_path / "home")}
    text = format_sites(find_sites(env), env)
    lines = text.splitlines()
    assert lines[0] == "search path (first match wins):"
    user = str(tmp_path / "home" / ".config" / "hpcpilot" / "sites")
    assert any(user in ln and "(missing)" in ln for ln in lines)
    [winner] = [ln for ln in lines if ln.endswith(str(mine))]
    assert winner.split()[:2] == ["local", "HPCPILOT_SITE_PATH"] and "shadowed" not in winner
    [hidden] = [ln for ln in lines if str(packaged_site_dir() / "local.yaml") in ln]
    assert hidden.split()[:2] == ["local", "package"] and f"(shadowed by {mine})" in hidden
    assert format_sites([], {}).endswith("sites:\n  none\n")


def test_workdir_from_the_environment(tmp_path: Path) -> None:
    loaded = load_config(env={"HPCPILOT_WORKDIR": str(tmp_path)})
    assert loaded.settings.run.workdir == str(tmp_path)
    assert loaded.origins["run.workdir"] == "env:HPCPILOT_WORKDIR"
    cli = load_config(env={"HPCPILOT_WORKDIR": str(tmp_path)}, overrides={"run.workdir": "/elsewhere"})
    assert cli.settings.run.workdir == "/elsewhere"
    with pytest.raises(ConfigError, match=r"both set 'run\.workdir'"):
        load_config(env={"HPCPILOT_WORKDIR": "/a", "HPCPILOT_RUN__WORKDIR": "/b"})
