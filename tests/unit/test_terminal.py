from __future__ import annotations

import io
import time

import pytest

from hpcpilot.config.loader import load_config
from hpcpilot.model.errors import ConfigError
from hpcpilot.runtime.terminal import StatusPrinter, plain_interval_s


def test_redraw_rewrites_one_line_and_steps_aside_for_log_records() -> None:
    out = io.StringIO()
    printer = StatusPrinter(out, redraw=True)
    printer.show("ranges 1/10")
    printer.show("ranges 2/10")
    printer.clear()
    out.write("a log record\n")
    printer.redraw()
    printer.finish()
    assert out.getvalue() == ("\r\033[Kranges 1/10\r\033[Kranges 2/10\r\033[Ka log record\nranges 2/10\n")


def test_lines_mode_prints_at_an_adaptive_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    out = io.StringIO()
    printer = StatusPrinter(out, redraw=False)
    for t, text in [(100.0, "a"), (101.0, "b"), (102.0, "c"), (140.0, "d"), (145.0, "e"), (150.0, "f")]:
        now[0] = t
        printer.show(text)
    printer.finish()
    assert out.getvalue().splitlines() == ["status: a", "status: c", "status: d", "status: f"]
    assert [plain_interval_s(s) for s in (0, 29, 30, 599, 600)] == [2.0, 2.0, 10.0, 10.0, 60.0]


def test_status_mode_is_checked() -> None:
    assert load_config(env={}, overrides={"run.status_mode": "REDRAW"}).settings.run.status_mode == "redraw"
    with pytest.raises(ConfigError, match=r"run\.status_mode"):
        load_config(env={}, overrides={"run.status_mode": "fancy"})
