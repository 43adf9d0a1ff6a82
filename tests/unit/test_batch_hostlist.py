"""Compressed host lists and per-node counts (Slurm / Cray notation)."""

from __future__ import annotations

import pytest

from hpcpilot.batch.hostlist import expand_counts, expand_hostlist


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("nid00[0099,0156-0157]", ("nid000099", "nid000156", "nid000157")),
        ("n[1-4]", ("n1", "n2", "n3", "n4")),
        ("a[01-03]b", ("a01b", "a02b", "a03b")),
        ("rack[1-2]-n[1-2]", ("rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2")),
        ("n1,m[2-3],x", ("n1", "m2", "m3", "x")),
        ("node007", ("node007",)),
        ("n[8-11]", ("n8", "n9", "n10", "n11")),
        ("n[098-101]", ("n098", "n099", "n100", "n101")),
        ("b-cn[1703,1705]", ("b-cn1703", "b-cn1705")),
        ("x1000c0s[0-1]b0n0", ("x1000c0s0b0n0", "x1000c0s1b0n0")),
        ("n[1-2],n[5]", ("n1", "n2", "n5")),
        ("  ", ()),
        ("", ()),
    ],
)
def test_expand_hostlist(text: str, hosts: tuple[str, ...]) -> None:
    assert expand_hostlist(text) == hosts


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("n[1-2", "unbalanced"),
        ("n1-2]", "unbalanced"),
        ("n[[1-2]]", "nested"),
        ("n[]", "empty brackets"),
        ("n[a-b]", "bad range"),
        ("n[3-1]", "descending"),
        ("n[1-]", "bad range"),
        ("n1,,n2", "empty host"),
        ("n1, n 2", "white space"),
    ],
)
def test_malformed_hostlist_names_the_text(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as info:
        expand_hostlist(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("text", "counts"),
    [("4(x2),2", (4, 4, 2)), ("64", (64,)), ("128(x3)", (128, 128, 128)), ("", ())],
)
def test_expand_counts(text: str, counts: tuple[int, ...]) -> None:
    assert expand_counts(text) == counts


@pytest.mark.parametrize("text", ["4(2)", "x", "4(x0)", "4(x2", "-1"])
def test_malformed_counts(text: str) -> None:
    with pytest.raises(ValueError, match="bad count"):
        expand_counts(text)
