"""Tests of the layered configuration loader."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import hpcpilot
from hpcpilot.config import (
    LoadedConfig,
    Settings,
    available_sites,
    check_config_file,
    format_config,
    load_config,
    settings_to_dict,
    site_config_dirs,
)
from hpcpilot.model.errors import ConfigError

REPO_SITE_DIR = Path(hpcpilot.__file__).parent / "site_configs"  # package data


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    return write(
        tmp_path / "site.yaml",
        "eventservice:\n  max_attempts: 4\n  mode: streaming\nrun:\n  max_jobs: 7\n",
    )


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    return write(tmp_path / "user.yaml", "eventservice:\n  max_attempts: 5\n")


# --------------------------------------------------------------------------- defaults


def test_defaults_without_any_layer() -> None:
    loaded = load_config(env={})
    assert loaded.settings == Settings()
    assert loaded.settings.eventservice.max_attempts == 3
    assert loaded.settings.run.log_level == "INFO"
    assert set(loaded.origins.values()) == {"default"}
    expected = {f"{s}.{k}" for s, keys in settings_to_dict(Settings()).items() for k in keys}
    assert set(loaded.origins) == expected
    assert "eventservice.max_attempts" in expected


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCPILOT_CONFIG", raising=False)
    monkeypatch.setenv("HPCPILOT_RUN__MAX_JOBS", "11")
    loaded = load_config()
    assert loaded.settings.run.max_jobs == 11
    assert loaded.origins["run.max_jobs"] == "env:HPCPILOT_RUN__MAX_JOBS"


def test_settings_to_dict_in_schema_order() -> None:
    data = settings_to_dict(Settings())
    assert list(data) == [
        "run",
        "local",
        "harvester",
        "panda",
        "eventservice",
        "node",
        "parallel",
        "payload",
        "batch",
        "launch",
        "environment",
        "data",
        "monitor",
        "disk",
        "act",
    ]
    assert data["parallel"]["batch_size"] == 64
    data["parallel"]["batch_size"] = 1
    assert Settings().parallel.batch_size == 64


# --------------------------------------------------------------------------- layers


def test_site_file_overrides_defaults(site_file: Path) -> None:
    loaded = load_config(site_file=site_file, env={})
    assert loaded.settings.eventservice.max_attempts == 4
    assert loaded.settings.eventservice.mode == "streaming"
    assert loaded.settings.run.max_jobs == 7
    assert loaded.origins["eventservice.max_attempts"] == f"site:{site_file}"
    assert loaded.origins["run.max_jobs"] == f"site:{site_file}"
    assert loaded.origins["eventservice.prefetch_per_slot"] == "default"


def test_user_file_overrides_site(site_file: Path, user_file: Path) -> None:
    loaded = load_config(site_file=site_file, env={"HPCPILOT_CONFIG": str(user_file)})
    assert loaded.settings.eventservice.max_attempts == 5
    assert loaded.origins["eventservice.max_attempts"] == f"user:{user_file}"
    assert loaded.settings.run.max_jobs == 7
    assert loaded.origins["run.max_jobs"] == f"site:{site_file}"


def test_env_overrides_user(site_file: Path, user_file: Path) -> None:
    env = {"HPCPILOT_CONFIG": str(user_file), "HPCPILOT_EVENTSERVICE__MAX_ATTEMPTS": "6"}
    loaded = load_config(site_file=site_file, env=env)
    assert loaded.settings.eventservice.max_attempts == 6
    assert loaded.origins["eventservice.max_attempts"] == "env:HPCPILOT_EVENTSERVICE__MAX_ATTEMPTS"


def test_cli_overrides_env(site_file: Path, user_file: Path) -> None:
    env = {"HPCPILOT_CONFIG": str(user_file), "HPCPILOT_EVENTSERVICE__MAX_ATTEMPTS": "6"}
    loaded = load_config(site_file=site_file, env=env, overrides={"eventservice.max_attempts": "8"})
    assert loaded.settings.eventservice.max_attempts == 8
    assert loaded.origins["eventservice.max_attempts"] == "cli:--set eventservice.max_attempts"
    assert loaded.origins["run.max_jobs"] == f"site:{site_file}"


def test_env_section_and_key_are_case_insensitive() -> None:
    loaded = load_config(env={"HPCPILOT_Parallel__Batch_Size": "9"})
    assert loaded.settings.parallel.batch_size == 9
    assert loaded.origins["parallel.batch_size"] == "env:HPCPILOT_Parallel__Batch_Size"


def test_unrelated_env_vars_are_ignored() -> None:
    env = {
        "HPCPILOT_SITE_CONFIG_DIR": "/nonexistent",
        "HPCPILOT_SOMETHING": "x",
        "HPCPILOT___KEY": "x",
        "HPCPILOT_RUN__": "x",
        "OTHER_RUN__MAX_JOBS": "x",
        "PATH": "/bin",
    }
    loaded = load_config(env=env)
    assert loaded.settings == Settings()


def test_empty_hpcpilot_config_is_ignored() -> None:
    assert load_config(env={"HPCPILOT_CONFIG": ""}).settings == Settings()


def test_missing_user_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read"):
        load_config(env={"HPCPILOT_CONFIG": str(missing)})


def test_float_field_accepts_yaml_int(tmp_path: Path) -> None:
    path = write(tmp_path / "f.yaml", "payload:\n  kill_grace_s: 3\n")
    value = load_config(site_file=path, env={}).settings.payload.kill_grace_s
    assert value == 3.0
    assert isinstance(value, float)


def test_empty_file_and_empty_section_are_allowed(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.yaml", "# nothing\n")
    assert check_config_file(empty) == Settings()
    section = write(tmp_path / "section.yaml", "run:\n")
    assert check_config_file(section) == Settings()


def test_site_and_site_file_together_rejected(site_file: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        load_config(site="local", site_file=site_file, env={})


# --------------------------------------------------------------------------- unknown names


def test_unknown_key_in_yaml(tmp_path: Path) -> None:
    path = write(tmp_path / "foo.yaml", "eventservice:\n  max_attempt: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(site_file=path, env={})
    assert str(info.value) == (
        f"{path}: unknown key 'eventservice.max_attempt' (did you mean 'max_attempts'?)"
    )


def test_unknown_section_in_yaml(tmp_path: Path) -> None:
    path = write(tmp_path / "foo.yaml", "eventsevice:\n  max_attempts: 2\n")
    with pytest.raises(ConfigError) as info:
        check_config_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "unknown section 'eventsevice'" in message
    assert "did you mean 'eventservice'?" in message


def test_unknown_key_without_close_match_has_no_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path / "foo.yaml", "run:\n  zzzzzz: 1\n")
    with pytest.raises(ConfigError) as info:
        check_config_file(path)
    assert "unknown key 'run.zzzzzz'" in str(info.value)
    assert "did you mean" not in str(info.value)


def test_unknown_key_in_env() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"HPCPILOT_EVENTSERVICE__MAX_ATTEMPT": "2"})
    message = str(info.value)
    assert "environment variable HPCPILOT_EVENTSERVICE__MAX_ATTEMPT" in message
    assert "'eventservice.max_attempt'" in message
    assert "did you mean 'max_attempts'?" in message


def test_unknown_section_in_env() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"HPCPILOT_PAYLAOD__TIMEOUT_S": "2"})
    message = str(info.value)
    assert "environment variable HPCPILOT_PAYLAOD__TIMEOUT_S" in message
    assert "unknown section 'paylaod'" in message
    assert "did you mean 'payload'?" in message


def test_unknown_key_on_cli() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides={"parallel.batch_sise": "2"})
    message = str(info.value)
    assert "command line --set parallel.batch_sise" in message
    assert "unknown key 'parallel.batch_sise'" in message
    assert "did you mean 'batch_size'?" in message


def test_unknown_section_on_cli() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides={"nod.cores": "2"})
    message = str(info.value)
    assert "command line --set nod.cores" in message
    assert "did you mean 'node'?" in message


def test_cli_key_without_section() -> None:
    with pytest.raises(ConfigError, match=r"command line --set cores: expected 'section\.key"):
        load_config(env={}, overrides={"cores": "2"})


def test_conflicting_env_spellings_rejected() -> None:
    env = {"HPCPILOT_RUN__MAX_JOBS": "1", "HPCPILOT_run__max_jobs": "2"}
    with pytest.raises(ConfigError, match=r"both set 'run\.max_jobs'"):
        load_config(env=env)


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("yaml_text", "key", "reason"),
    [
        ("run:\n  max_jobs: true\n", "run.max_jobs", "expected an integer, got boolean True"),
        ("run:\n  max_jobs: '5'\n", "run.max_jobs", "expected an integer, got string '5'"),
        ("run:\n  max_jobs: 1.5\n", "run.max_jobs", "expected an integer"),
        ("run:\n  max_jobs: -1\n", "run.max_jobs", "must be >= 0"),
        ("run:\n  status_interval_s: -0.5\n", "run.status_interval_s", "must be >= 0"),
        ("run:\n  status_interval_s: false\n", "run.status_interval_s", "expected a number"),
        ("run:\n  status_interval_s: .nan\n", "run.status_interval_s", "finite"),
        ("run:\n  workdir: 5\n", "run.workdir", "expected a string, got integer 5"),
        ("run:\n  workdir:\n", "run.workdir", "got null"),
        ("run:\n  log_level: LOUD\n", "run.log_level", "must be one of DEBUG, INFO"),
        ("eventservice:\n  max_attempts: 0\n", "eventservice.max_attempts", "must be >= 1"),
        ("eventservice:\n  prefetch_per_slot: 0\n", "eventservice.prefetch_per_slot", ">= 1"),
        ("local:\n  events_per_range: 0\n", "local.events_per_range", "must be >= 1"),
        ("parallel:\n  batch_size: 0\n", "parallel.batch_size", "must be >= 1"),
        ("node:\n  cores: -4\n", "node.cores", "must be >= 0"),
        ("payload:\n  timeout_s: -1\n", "payload.timeout_s", "must be >= 0"),
    ],
)
def test_bad_yaml_values_name_file_and_key(tmp_path: Path, yaml_text: str, key: str, reason: str) -> None:
    path = write(tmp_path / "bad.yaml", yaml_text)
    with pytest.raises(ConfigError) as info:
        check_config_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid value for '{key}'")
    assert reason in message


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("HPCPILOT_RUN__MAX_JOBS", "abc", "expected an integer, got 'abc'"),
        ("HPCPILOT_RUN__MAX_JOBS", "2.5", "expected an integer"),
        ("HPCPILOT_RUN__MAX_JOBS", "-3", "must be >= 0"),
        ("HPCPILOT_PAYLOAD__KILL_GRACE_S", "soon", "expected a number"),
        ("HPCPILOT_PAYLOAD__KILL_GRACE_S", "-1.0", "must be >= 0"),
        ("HPCPILOT_PAYLOAD__KILL_GRACE_S", "inf", "finite"),
        ("HPCPILOT_EVENTSERVICE__MAX_ATTEMPTS", "0", "must be >= 1"),
        ("HPCPILOT_RUN__LOG_LEVEL", "verbose", "must be one of"),
    ],
)
def test_bad_env_values_name_variable_and_key(name: str, raw: str, reason: str) -> None:
    section, key = name.removeprefix("HPCPILOT_").lower().split("__")
    with pytest.raises(ConfigError) as info:
        load_config(env={name: raw})
    message = str(info.value)
    assert message.startswith(f"environment variable {name}: invalid value for '{section}.{key}'")
    assert reason in message


def test_bad_cli_value_names_option_and_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides={"parallel.batch_size": "0"})
    message = str(info.value)
    assert message.startswith(
        "command line --set parallel.batch_size: invalid value for 'parallel.batch_size'"
    )
    assert "must be >= 1" in message


def test_log_level_is_normalised_to_upper_case(tmp_path: Path) -> None:
    path = write(tmp_path / "l.yaml", "run:\n  log_level: warning\n")
    assert check_config_file(path).run.log_level == "WARNING"
    loaded = load_config(env={"HPCPILOT_RUN__LOG_LEVEL": "Debug"})
    assert loaded.settings.run.log_level == "DEBUG"


def test_zero_is_allowed_where_minimum_is_zero() -> None:
    loaded = load_config(env={}, overrides={"run.max_jobs": "0", "payload.timeout_s": "0"})
    assert loaded.settings.run.max_jobs == 0
    assert loaded.origins["run.max_jobs"] == "cli:--set run.max_jobs"


def test_string_values_are_parsed_for_numbers() -> None:
    loaded = load_config(env={"HPCPILOT_PARALLEL__SPIN_S": "1e-3"}, overrides={"node.cores": "16"})
    assert loaded.settings.parallel.spin_s == pytest.approx(0.001)
    assert loaded.settings.node.cores == 16
    assert isinstance(loaded.settings.node.cores, int)


def test_string_values_kept_verbatim_for_str_fields() -> None:
    loaded = load_config(env={"HPCPILOT_RUN__WORKDIR": "/scratch/42"})
    assert loaded.settings.run.workdir == "/scratch/42"


# --------------------------------------------------------------------------- bool parsing


@dataclasses.dataclass(frozen=True)
class _BoolSection:
    flag: bool = False


@dataclasses.dataclass(frozen=True)
class _BoolSettings:
    run: _BoolSection = dataclasses.field(default_factory=_BoolSection)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("1", True),
        ("on", True),
        ("false", False),
        ("False", False),
        ("NO", False),
        ("0", False),
        ("Off", False),
    ],
)
def test_bool_strings_are_parsed(raw: str, expected: bool) -> None:
    from hpcpilot.config.loader import _from_text

    assert _from_text(raw, bool) is expected


@pytest.mark.parametrize("raw", ["maybe", "", "2", "y"])
def test_bad_bool_strings_rejected(raw: str) -> None:
    from hpcpilot.config.loader import _from_text

    with pytest.raises(ValueError, match="expected a boolean"):
        _from_text(raw, bool)


def test_bool_field_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The schema has no bool field yet; swap in one that does to test the whole path.
    from hpcpilot.config import loader

    schema = {"run": (_BoolSection, {"flag": loader.FieldRule(bool)})}
    monkeypatch.setattr(loader, "_schema", lambda: schema)
    monkeypatch.setattr(loader, "Settings", _BoolSettings)
    loaded = load_config(env={"HPCPILOT_RUN__FLAG": "yes"})
    assert loaded.settings.run.flag is True  # type: ignore[attr-defined]
    assert loaded.origins["run.flag"] == "env:HPCPILOT_RUN__FLAG"
    loaded = load_config(env={}, overrides={"run.flag": "off"})
    assert loaded.settings.run.flag is False  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"--set run\.flag: invalid value for 'run\.flag'"):
        load_config(env={}, overrides={"run.flag": "perhaps"})
    path = write(tmp_path / "b.yaml", "run:\n  flag: 1\n")
    with pytest.raises(ConfigError, match="expected a boolean, got integer 1"):
        check_config_file(path)
    path = write(tmp_path / "b.yaml", "run:\n  flag: true\n")
    assert check_config_file(path).run.flag is True  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- broken files


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.yaml", "run:\n  max_jobs: 1\n  workdir: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        check_config_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid YAML")
    assert "(line " in message


def test_non_mapping_top_level(tmp_path: Path) -> None:
    path = write(tmp_path / "list.yaml", "- run\n- local\n")
    with pytest.raises(ConfigError) as info:
        load_config(site_file=path, env={})
    assert str(info.value).startswith(f"{path}: the top level must be a mapping")


def test_non_mapping_section(tmp_path: Path) -> None:
    path = write(tmp_path / "sec.yaml", "run: 5\n")
    with pytest.raises(ConfigError) as info:
        check_config_file(path)
    message = str(info.value)
    assert message.startswith(f"{path}: section 'run' must be a mapping")


def test_user_file_errors_name_the_user_file(tmp_path: Path) -> None:
    path = write(tmp_path / "user.yaml", "run:\n  max_job: 1\n")
    with pytest.raises(ConfigError, match=r"user\.yaml: unknown key 'run\.max_job'"):
        load_config(env={"HPCPILOT_CONFIG": str(path)})


# --------------------------------------------------------------------------- site lookup


def test_site_config_dirs_order_and_existence(tmp_path: Path) -> None:
    dirs = site_config_dirs({"HPCPILOT_SITE_CONFIG_DIR": str(tmp_path)})
    assert dirs[0] == tmp_path
    assert dirs[-1] == REPO_SITE_DIR
    assert all(d.is_dir() for d in dirs)
    assert tmp_path / "missing" not in site_config_dirs(
        {"HPCPILOT_SITE_CONFIG_DIR": str(tmp_path / "missing")}
    )


def test_site_looked_up_by_name(tmp_path: Path) -> None:
    write(tmp_path / "mysite.yaml", "node:\n  cores: 12\n")
    env = {"HPCPILOT_SITE_CONFIG_DIR": str(tmp_path)}
    assert "mysite" in available_sites(env)
    assert "local" in available_sites(env)
    loaded = load_config(site="mysite", env=env)
    assert loaded.settings.node.cores == 12
    assert loaded.origins["node.cores"] == f"site:{tmp_path / 'mysite.yaml'}"


def test_site_dir_from_env_wins_over_repo(tmp_path: Path) -> None:
    write(tmp_path / "local.yaml", "node:\n  cores: 3\n")
    loaded = load_config(site="local", env={"HPCPILOT_SITE_CONFIG_DIR": str(tmp_path)})
    assert loaded.settings.node.cores == 3


def test_local_site(tmp_path: Path) -> None:
    loaded = load_config(site="local", env={})
    assert loaded.settings.run.communicator == "local"
    assert loaded.settings.payload.kill_grace_s == 5.0
    assert loaded.settings.local.events_per_range == 10
    assert loaded.origins["payload.kill_grace_s"] == f"site:{REPO_SITE_DIR / 'local.yaml'}"


def test_unknown_site_lists_available(tmp_path: Path) -> None:
    write(tmp_path / "alpha.yaml", "{}\n")
    with pytest.raises(ConfigError) as info:
        load_config(site="nosuchsite", env={"HPCPILOT_SITE_CONFIG_DIR": str(tmp_path)})
    message = str(info.value)
    assert "unknown site 'nosuchsite'" in message
    assert "alpha" in message
    assert "local" in message


def test_site_name_cannot_escape_site_dirs(tmp_path: Path) -> None:
    write(tmp_path / "outside.yaml", "{}\n")
    sub = tmp_path / "sites"
    sub.mkdir()
    with pytest.raises(ConfigError, match="unknown site"):
        load_config(site="../outside", env={"HPCPILOT_SITE_CONFIG_DIR": str(sub)})


def test_site_files_in_repo_exist() -> None:
    assert (REPO_SITE_DIR / "local.yaml").is_file()


@pytest.mark.parametrize("path", sorted(REPO_SITE_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_repo_site_file_is_valid(path: Path) -> None:
    settings = check_config_file(path)
    assert isinstance(settings, Settings)


# --------------------------------------------------------------------------- formatting


def test_format_config_lists_every_key_with_origin(site_file: Path) -> None:
    loaded = load_config(site_file=site_file, env={}, overrides={"node.cores": "2"})
    text = format_config(loaded)
    lines = text.splitlines()
    assert len(lines) == len(loaded.origins)
    for dotted, origin in loaded.origins.items():
        matching = [line for line in lines if line.split(" ", 1)[0] == dotted]
        assert len(matching) == 1, dotted
        assert matching[0].endswith(f"[{origin}]")
    assert any(line.startswith("node.cores ") and " = 2 " in line for line in lines)
    # Aligned columns: every "=" and every "[" at the same position.
    assert len({line.index(" = ") for line in lines}) == 1
    assert len({line.index("   [") for line in lines}) == 1
    # Sections in schema order.
    sections = [line.split(".", 1)[0] for line in lines]
    assert list(dict.fromkeys(sections)) == list(settings_to_dict(loaded.settings))


def test_format_config_value_spelling() -> None:
    loaded = LoadedConfig(settings=load_config(env={}, overrides={"run.workdir": ""}).settings, origins={})
    text = format_config(loaded)
    assert "run.workdir" in text
    assert "= ''" in text
    assert "[?]" in text


def test_a_bad_walltime_is_a_configuration_error(tmp_path: Path) -> None:
    from hpcpilot.cli import _settings_for_run, build_parser

    args = build_parser().parse_args(["run", "--workdir", str(tmp_path), "--walltime", "soon"])
    with pytest.raises(
        ConfigError, match=r"batch.walltime: not a duration: 'soon'.*cli:--set batch.walltime"
    ):
        _settings_for_run(args)
