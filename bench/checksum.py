"""Checksum throughput: ``adler32_of_file`` / ``md5_of_file`` against the bare hash in memory.

Usage::

    .venv/bin/python bench/checksum.py [--size-mib 1024] [--repeat 3] [--dir /tmp] [--json out.json]

A file of ``--size-mib`` random MiB is written to ``--dir`` and read once (so it is in the page cache),
then each checksum is timed ``--repeat`` times (best run kept): the streaming file checksums of
``hpcpilot.data.checksums`` and `zlib.adler32` / `hashlib.md5` over the same bytes already in memory.
The figure is the ratio file/in-memory throughput: how much reading through the page cache costs on
top of the hash. Target: file adler32 >= 80 % of in-memory zlib.adler32. About 15 s for 1 GiB.
The file is removed at the end. Prints a markdown table; always exits 0 (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpcpilot.data.checksums import BUFFER_SIZE, BUFFERS, adler32_of_file, md5_of_file

TARGET = 0.80
MIB = 1 << 20


def best_of(repeat: int, func: Callable[[], object]) -> tuple[float, object]:
    """The shortest of ``repeat`` timed calls, and the last result."""
    times = []
    result: object = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def write_random(path: Path, size: int) -> None:
    """``size`` bytes: one 16 MiB random block, repeated (the hashes do not care, and it is quick)."""
    block = os.urandom(16 * MIB)
    with path.open("wb") as handle:
        written = 0
        while written < size:
            written += handle.write(block[: size - written])


def measure(path: Path, size_mib: int, repeat: int) -> list[dict[str, Any]]:
    """One row per algorithm: the file checksum and the in-memory hash of the same bytes."""
    data = path.read_bytes()  # also puts the file in the page cache
    cases: list[tuple[str, Callable[[], str], Callable[[], str]]] = [
        ("adler32", lambda: adler32_of_file(path), lambda: f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"),
        ("md5", lambda: md5_of_file(path), lambda: hashlib.md5(data, usedforsecurity=False).hexdigest()),
    ]
    rows = []
    for algo, file_func, mem_func in cases:
        file_func()  # warm up
        file_s, file_value = best_of(repeat, file_func)
        mem_s, mem_value = best_of(repeat, mem_func)
        rows.append(
            {
                "algorithm": algo,
                "file_s": file_s,
                "memory_s": mem_s,
                "file_mib_s": size_mib / file_s,
                "memory_mib_s": size_mib / mem_s,
                "ratio": mem_s / file_s,
                "same_value": file_value == mem_value,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    size = args.size_mib * MIB

    fd, name = tempfile.mkstemp(prefix="hpcpilot-checksum-bench-", dir=args.dir)
    os.close(fd)
    path = Path(name)
    try:
        write_random(path, size)
        rows = measure(path, args.size_mib, args.repeat)
    finally:
        path.unlink(missing_ok=True)

    print(f"# checksum throughput: {args.size_mib} MiB in the page cache, best of {args.repeat}")
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, ", end=""
    )
    print(f"buffers {BUFFERS} x {BUFFER_SIZE // MIB} MiB, load {os.getloadavg()[0]:.2f}")
    print()
    print("| algorithm | file (MiB/s) | in memory (MiB/s) | file / memory | same value |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        print(
            f"| {row['algorithm']} | {row['file_mib_s']:.0f} | {row['memory_mib_s']:.0f} | "
            f"{row['ratio']:.0%} | {'yes' if row['same_value'] else 'NO'} |"
        )
    adler = rows[0]["ratio"]
    verdict = "PASS" if adler >= TARGET else "FAIL"
    print()
    print(f"target: file adler32 >= {TARGET:.0%} of in-memory zlib.adler32: {adler:.0%} {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps({"size_mib": args.size_mib, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
