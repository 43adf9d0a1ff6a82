"""The payload of bench/drain.py: one range, a pseudo-random duration, an atomic output, a timing log.

Usage: drain_payload.py RANGE_ID START_EVENT OUTPUT MEAN_S (log file: $BENCH_DRAIN_LOG).
"""

from __future__ import annotations

import os
import sys
import time


def log(kind: str, range_id: str) -> None:
    with open(os.environ["BENCH_DRAIN_LOG"], "a") as handle:  # one short append: atomic
        handle.write(f"{kind} {range_id} {time.time():.6f}\n")


def main() -> None:
    range_id, start, output, mean = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    log("start", range_id)
    fraction = (start * 2654435761 % 2**32) / 2**32  # deterministic, spread over [0, 1)
    time.sleep(mean * (0.5 + fraction))
    tmp = f"{output}.tmp"
    with open(tmp, "w") as handle:
        handle.write(f"{range_id}\n")
    os.replace(tmp, output)
    log("end", range_id)


if __name__ == "__main__":
    main()
