"""The naming rules of job and range fields: real ATLAS names pass, paths and shell text do not."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hpcpilot.model.errors import JobDefinitionError, RangeDefinitionError
from hpcpilot.model.job import parse_job
from hpcpilot.model.naming import (
    DATASET,
    FILE_NAME,
    GUID,
    JOB_FIELD_RULES,
    PANDA_SITE,
    PFN,
    RANGE_FIELD_RULES,
    RANGE_ID,
    RSE,
    RUCIO_SCOPE,
    NamingRule,
)
from hpcpilot.model.ranges import parse_range

DATASET_NAME = (
    "mc23_13p6TeV.601229.PhPy8EG_A14_ttbar_hdamp258p75_SingleLep.simul.HITS.e8514_s4162_tid38000000_00"
)

#: what every rule refuses: paths, relative directory names, NUL, newlines, shell metacharacters
HOSTILE = [
    "",
    ".",
    "..",
    "../../../victim",
    "/etc/passwd",
    "a/b",
    "a\0b",
    "a\nb",
    "a\rb",
    "$(touch x)",
    "`touch x`",
    "x;touch pwned",
    "a|b",
    "a&b",
    "a>b",
    "a<b",
    "a b",
    "a\tb",
    "a'b",
    'a"b',
    "a*",
    "a?",
    "a[1]",
    "{a,b}",
    "~root",
    "a!b",
    "a#b",
    "a\\b",
]

GOOD: dict[NamingRule, list[str]] = {
    RUCIO_SCOPE: ["mc23_13p6TeV", "user.jdoe", "group.phys-higgs", "data18_13TeV", "_tmp", "a" * 25],
    DATASET: [
        DATASET_NAME,
        f"mc23_13p6TeV:{DATASET_NAME}",
        "user.jdoe:user.jdoe.test.v1_EXT0",
        "demo.HITS.hpcpilot",
        "ds",
    ],
    RSE: ["CERN-PROD_DATADISK", "BNL-OSG2_DATADISK", "NERSC_SCRATCHDISK", "T2_US_Nebraska", "X"],
    GUID: [
        "4A9B2C1E-7D3F-4E21-9A8B-1C2D3E4F5A6B",
        "4a9b2c1e-7d3f-4e21-9a8b-1c2d3e4f5a6b",
        "4A9B2C1E7D3F4E219A8B1C2D3E4F5A6B",
    ],
    FILE_NAME: [
        "EVNT.37418906._000001.pool.root.1",
        "HITS.demo._000001.h5",
        "log.38000000._000001.job.log.tgz.1",
        "user.jdoe.12345._000001.output+a=b@c,d:e.root",
        "a" * 255,
    ],
    PANDA_SITE: ["CERN-PROD_DATADISK", "BNL_PROD_MCORE", "praguelcg2_Karolina_MCORE", "nucleus:CERN-PROD"],
    RANGE_ID: ["41000123-6543210987-17-3-1", "Range-1", "a.b:c_d"],
    PFN: [
        "/lustre/atlas/work/4242/EVNT.01._000001.pool.root.1",
        "EVNT.01._000001.pool.root.1",
        "root://se.example.org:1094//atlas/rucio/mc23_13p6TeV/69/45/EVNT.01._000001.pool.root.1",
        "./x",
    ],
}

BAD: dict[NamingRule, list[str]] = {
    RUCIO_SCOPE: ["a" * 26, "-rf", ".hidden", "mc23:x", "scope%20"],
    DATASET: ["x", "-ds", "_ds", ".ds", "a:b:c", "ds/", "a" * 252, "mc23_13p6TeV:/ds"],
    RSE: ["CERN--PROD", "_CERN", "CERN_", "CERN.PROD", "a" * 256],
    GUID: ["A1B2", "g-1", "{4A9B2C1E-7D3F-4E21-9A8B-1C2D3E4F5A6B}", "4A9B2C1E-7D3F-4E21-9A8B-1C2D3E4F5A6G"],
    FILE_NAME: ["-rf", "a" * 256, "x%y"],
    PANDA_SITE: ["-site", ".site", "_site"],
    RANGE_ID: ["-1-2-3-4-5", ".1", "a" * 201],
    PFN: ["-x", "/a/../b", "root://se//atlas/../../etc/passwd", "/a/..", "a" * 4097],
}


@pytest.mark.parametrize(("rule", "value"), [(r, v) for r, values in GOOD.items() for v in values])
def test_real_names_pass(rule: NamingRule, value: str) -> None:
    assert rule.problem(value) is None
    assert rule.check(value) == value


@pytest.mark.parametrize(
    ("rule", "value"),
    [(r, v) for r, values in BAD.items() for v in values]
    + [(r, v) for r in GOOD for v in HOSTILE if not (r is PFN and v in {".", "..", "/etc/passwd", "a/b"})],
)
def test_bad_names_are_refused(rule: NamingRule, value: str) -> None:
    problem = rule.problem(value)
    assert problem is not None
    with pytest.raises(ValueError, match=re.escape(f"is not a {rule.name}")):
        rule.check(value, "scopeOut entry")


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("../../../victim", "it holds '/'"),
        ("$(touch x)", "it holds '$'"),
        ("a\nb", "it holds '\\n'"),
        ("a\0b", "it holds '\\x00'"),
        ("..", "relative directory"),
        ("a" * 26, "longer than 25"),
        ("-rf", "not starting with '.' or '-'"),
    ],
)
def test_the_message_says_what_is_wrong(value: str, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        RUCIO_SCOPE.check(value, "scopeOut entry")
    assert needle in str(err.value) and "scopeOut entry" in str(err.value)


def test_every_rule_documents_its_source() -> None:
    for rules in (JOB_FIELD_RULES, RANGE_FIELD_RULES):
        for field, rule in rules.items():
            assert rule.source and rule.allowed, field


def _job(**fields: Any) -> dict[str, Any]:
    job = {
        "PandaID": 4242,
        "transformation": "Sim_tf.py",
        "inFiles": "EVNT.37418906._000001.pool.root.1",
        "GUID": "4A9B2C1E-7D3F-4E21-9A8B-1C2D3E4F5A6B",
        "scopeIn": "mc23_13p6TeV",
        "realDatasetsIn": f"mc23_13p6TeV:{DATASET_NAME}",
        "ddmEndPointIn": "CERN-PROD_DATADISK",
        "outFiles": "HITS.38000000._000001.pool.root.1,log.38000000._000001.job.log.tgz.1",
        "scopeOut": "mc23_13p6TeV,mc23_13p6TeV",
        "realDatasets": f"{DATASET_NAME},{DATASET_NAME}.log",
        "destinationDBlock": f"{DATASET_NAME}_sub0123456789,{DATASET_NAME}.log_sub0123456789",
        "ddmEndPointOut": "CERN-PROD_DATADISK,CERN-PROD_DATADISK",
        "destinationSE": "CERN-PROD_DATADISK",
        "logFile": "log.38000000._000001.job.log.tgz.1",
        "logGUID": "4a9b2c1e-7d3f-4e21-9a8b-1c2d3e4f5a6c",
        "scopeLog": "mc23_13p6TeV",
    }
    job.update(fields)
    return job


def test_a_real_atlas_job_parses() -> None:
    job = parse_job(_job(), source="test")
    [spec] = job.input_files
    assert spec.scope == "mc23_13p6TeV" and spec.dataset == f"mc23_13p6TeV:{DATASET_NAME}"
    assert job.log_file is not None and job.log_file.guid == "4a9b2c1e-7d3f-4e21-9a8b-1c2d3e4f5a6c"
    assert job.destination_se == "CERN-PROD_DATADISK"
    user = parse_job(_job(scopeOut="user.jdoe,user.jdoe", scopeLog="group.phys-higgs"), source="test")
    assert user.output_files[0].scope == "user.jdoe" and user.log_file is not None
    assert user.log_file.scope == "group.phys-higgs"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("scopeOut", "../../../victim,demo"),
        ("scopeOut", "$(touch x),demo"),
        ("scopeIn", "mc23\nx"),
        ("scopeLog", "/abs"),
        ("realDatasets", "../ds,ds2"),
        ("realDatasetsIn", "ds;rm -rf /"),
        ("destinationDBlock", "../../x"),
        ("ddmEndPointOut", "CERN-PROD_DATADISK,../X"),
        ("ddmEndPointIn", "SITE DISK"),
        ("GUID", "$(touch pwned)"),
        ("logGUID", "not-a-guid"),
        ("destinationSE", "site/../x"),
        ("inFiles", "-rf"),
        ("outFiles", "a\0b,log.38000000._000001.job.log.tgz.1"),
        ("logFile", "../log.tgz"),
    ],
)
def test_a_bad_job_field_fails_the_job_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(JobDefinitionError) as err:
        parse_job(_job(**{field: value}), source="HPCJobs.json")
    assert err.value.context["field"] == field and err.value.context["PandaID"] == 4242
    assert int(err.value.code) == 1008
    assert f"'{field}'" in str(err.value)


SERVED = {
    "eventRangeID": "41000123-6543210987-17-3-1",
    "startEvent": 1,
    "lastEvent": 10,
    "LFN": "EVNT.37418906._000001.pool.root.1",
    "GUID": "4A9B2C1E-7D3F-4E21-9A8B-1C2D3E4F5A6B",
    "scope": "mc23_13p6TeV",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("GUID", "$(touch pwned)"),
        ("LFN", "x;touch pwned"),
        ("LFN", "../../../../tmp/x"),
        ("scope", "../x"),
        ("PFN", "/data/../../etc/passwd"),
        ("PFN", "/data/x; rm -rf /"),
        ("eventRangeID", "-1"),
    ],
)
def test_a_bad_range_field_is_refused_naming_job_range_and_field(field: str, value: str) -> None:
    with pytest.raises(RangeDefinitionError) as err:
        parse_range({**SERVED, field: value}, source="JobsEventRanges.json", panda_id=6543210987)
    context = err.value.context
    assert context["field"] == field and context["PandaID"] == 6543210987
    if field != "eventRangeID":
        assert context["eventRangeID"] == SERVED["eventRangeID"]
    assert "PandaID=6543210987" in str(err.value) and f"field={field}" in str(err.value)


def test_a_served_range_with_empty_or_real_fields_parses() -> None:
    rng = parse_range({**SERVED, "PFN": "/lustre/atlas/EVNT.1"}, source="t", panda_id=1)
    assert rng.guid == SERVED["GUID"] and rng.pfn == "/lustre/atlas/EVNT.1"
    empty = parse_range({**SERVED, "LFN": "", "GUID": "", "scope": ""}, source="t")
    assert (empty.lfn, empty.guid, empty.scope, empty.pfn) == ("", "", "", "")


def test_the_security_page_lists_every_field_with_its_rule() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    for rules in (JOB_FIELD_RULES, RANGE_FIELD_RULES):
        for field, rule in rules.items():
            [row] = [
                r
                for r in rows
                if f"`{field}`" in r.split("|")[1]
                and (rules is RANGE_FIELD_RULES) == (r.endswith("the range is refused |"))
            ]
            assert rule.name in row, (field, rule.name, row)
