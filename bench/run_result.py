"""The result record that the yardstick scripts print for bench/dispatch.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit_result(
    system: str,
    *,
    done: int,
    wall: float,
    workers: int,
    batch: int,
    payload_s: float,
    out: Path | None,
    **extra: Any,
) -> None:
    """Print (or write to ``out``) one JSON line: ranges done, rate and utilisation of a run."""
    result = {
        "system": system,
        "n": done,
        **extra,
        "workers": workers,
        "batch": batch,
        "payload_s": payload_s,
        "wall_s": wall,
        "rate": done / wall if wall > 0 else 0.0,
        "utilisation": done * payload_s / (workers * wall) if wall > 0 else 0.0,
    }
    text = json.dumps(result)
    if out:
        out.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
