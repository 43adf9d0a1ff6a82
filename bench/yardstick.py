"""What the yardstick scripts (bare dispatcher, MPIPoolExecutor) share: their options and their result."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def parse_args(description: str | None, *, ranges: str, batch: str, stop: str) -> argparse.Namespace:
    """The options both yardsticks take, with help texts in their own terms."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--n", type=int, required=True, help=ranges)
    parser.add_argument("--batch", type=int, default=1, help=batch)
    parser.add_argument("--payload", type=float, default=0.0, help="seconds per range")
    parser.add_argument(
        "--max-s", type=float, default=0.0, help=f"{stop} after this many seconds (0: no limit)"
    )
    parser.add_argument("--out", type=Path, help="where to write the JSON result")
    return parser.parse_args()


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
