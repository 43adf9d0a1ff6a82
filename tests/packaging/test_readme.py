"""The README is read on an index page and in a wheel's metadata: it points only inside the repository."""

from __future__ import annotations

import re

from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_the_readme_points_nowhere_outside_the_repository() -> None:
    assert "../" not in README  # main linked ../shared/DESIGN.md
    paths = set(re.findall(r"`((?:docs|hpcpilot|tests|bench|ci)/[\w./-]*|LICENSE|Makefile)`", README))
    assert paths
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert not missing, missing


def test_the_quick_start_begins_with_pip_and_python_m_hpcpilot() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block.startswith('pip install "hpcpilot[mpich]"')
    assert re.search(r"python -m hpcpilot\s+#", first_block)  # no command: run
    assert "make run" in README and "make test" in README
