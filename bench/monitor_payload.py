"""The payload of bench/monitoring.py: a fixed amount of CPU work, its own CPU time in the output.

Usage: monitor_payload.py OUTPUT LOOPS
"""

from __future__ import annotations

import os
import sys
import time


def main() -> None:
    output, loops = sys.argv[1], int(sys.argv[2])
    total = 0
    for i in range(loops):
        total += i * i % 7
    tmp = f"{output}.tmp"
    with open(tmp, "w") as handle:
        handle.write(f"{time.process_time():.6f} {total}\n")
    os.replace(tmp, output)


if __name__ == "__main__":
    main()
