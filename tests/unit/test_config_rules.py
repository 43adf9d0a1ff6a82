"""Settings that validate themselves: the rules live on the fields of ``config/schema.py``.

A list setting is a YAML list in a file (the comma-separated string stays valid there and is the form of
the environment and ``--set``); ``Literal`` and ``Annotated[..., Bounds(...)]`` fields carry the allowed
words and intervals the loader applies; ``hpcpilot config schema`` publishes them as a JSON Schema that
every packaged site file satisfies.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path
from typing import Annotated, Literal

import jsonschema
import pytest
import yaml

from hpcpilot.config import loader
from hpcpilot.config.jsonschema import attribute_docs, settings_json_schema
from hpcpilot.config.loader import FieldRule, available_sites, field_rule, load_config, site_config_dirs
from hpcpilot.config.schema import Bounds, EnvironmentSettings, Settings
from hpcpilot.model.errors import ConfigError
from tests.conftest import REPO, pilot_env


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def test_a_site_file_takes_yaml_lists(tmp_path: Path) -> None:
    site = _write(
        tmp_path,
        "environment:\n  chain: [modules, apptainer]\n  modules_load:\n    - gcc/12\n    - apptainer\n"
        "data:\n  stagein_tools: []\nmonitor:\n  plugins: psutil\n",
    )
    settings = load_config(site_file=site, env={}).settings
    assert settings.environment.chain == ("modules", "apptainer")
    assert settings.environment.modules_load == ("gcc/12", "apptainer")
    assert settings.data.stagein_tools == ()
    assert settings.monitor.plugins == ("psutil",)  # a one-item list may stay a plain string


def test_comma_strings_stay_valid_in_the_environment_and_on_the_command_line(tmp_path: Path) -> None:
    env = {"HPCPILOT_DATA__STAGEOUT_TOOLS": "xrdcp, cp,"}
    settings = load_config(env=env, overrides={"environment.binds": "/a:/b,/c"}).settings
    assert settings.data.stageout_tools == ("xrdcp", "cp")
    assert settings.environment.binds == ("/a:/b", "/c")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("  chain: [modules, 3]\n", "expected a list of non-empty strings, got an item integer 3"),
        ("  chain: [modules, '']\n", "expected a list of non-empty strings"),
        ("  chain: ['modules,apptainer']\n", "a list item holds no comma"),
        ("  chain: {a: 1}\n", "expected a list of strings"),
    ],
)
def test_a_bad_list_names_the_file_and_the_key(tmp_path: Path, body: str, reason: str) -> None:
    site = _write(tmp_path, "environment:\n" + body)
    with pytest.raises(ConfigError, match=f"{site}: invalid value for 'environment.chain': {reason}"):
        load_config(site_file=site, env={})


def test_the_rules_are_read_from_the_field_types() -> None:
    assert field_rule(Literal["a", "B"], "x.y") == FieldRule(str, choices=("a", "B"))
    assert field_rule(Annotated[int, Bounds(2, 5)], "x.y") == FieldRule(int, bounds=Bounds(2, 5))
    assert field_rule(float, "x.y") == FieldRule(float)  # bare numbers: not negative
    assert field_rule(tuple[str, ...], "x.y") == FieldRule(tuple)
    with pytest.raises(TypeError, match=r"unsupported settings type .* for x\.y"):
        field_rule(list[str], "x.y")
    assert not hasattr(loader, "_RULES")  # no second table keyed by dotted names


def test_every_choice_and_bound_of_a_field_is_applied() -> None:
    """For every Literal and bounded field: a value outside is refused, the edge is taken."""
    checked = 0
    for section, (cls, _) in loader.settings_rules().items():
        hints = typing.get_type_hints(cls, include_extras=True)
        for item in dataclasses.fields(cls):
            rule = field_rule(hints[item.name], f"{section}.{item.name}")
            dotted = f"{section}.{item.name}"
            if rule.choices:
                spelled = rule.choices[-1].swapcase()
                assert getattr(load_config(env={}, overrides={dotted: spelled}).settings, section)
                with pytest.raises(ConfigError, match=f"'{dotted}': must be one of"):
                    load_config(env={}, overrides={dotted: "no-such-word"})
                checked += 1
            elif rule.kind in (int, float):
                low = rule.bounds.minimum
                edge = load_config(env={}, overrides={dotted: str(low if rule.kind is float else int(low))})
                assert getattr(getattr(edge.settings, section), item.name) == low
                below = low - (1 if rule.kind is int else 0.001)
                with pytest.raises(ConfigError, match=f"'{dotted}': must be >="):
                    load_config(env={}, overrides={dotted: str(below)})
                checked += 1
    assert checked > 50


def test_attribute_docs_reads_the_numpy_attributes_section() -> None:
    docs = attribute_docs(EnvironmentSettings)
    assert [f.name for f in dataclasses.fields(EnvironmentSettings)] == list(docs)
    assert "outermost first" in docs["chain"]


def test_config_schema_prints_a_json_schema_every_site_file_satisfies() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hpcpilot", "config", "schema"],
        capture_output=True,
        text=True,
        env=pilot_env(),
        cwd=REPO,
        check=True,
    )
    schema = json.loads(done.stdout)
    assert schema == json.loads(json.dumps(settings_json_schema()))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert set(schema["properties"]) == {f.name for f in dataclasses.fields(Settings)}
    for section in schema["properties"].values():
        assert all(prop.get("description") for prop in section["properties"].values())
    sites = available_sites()
    assert sites
    for name in sites:
        path = next(d / f"{name}.yaml" for d in site_config_dirs() if (d / f"{name}.yaml").is_file())
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text()) or {}))
        assert not errors, f"{path}: {errors[0].message}"
    bad = {"environment": {"chain": ["a,b"]}, "run": {"log_level": "LOUD"}, "nosuch": {}}
    messages = sorted(e.message for e in validator.iter_errors(bad))
    assert len(messages) == 3, messages
