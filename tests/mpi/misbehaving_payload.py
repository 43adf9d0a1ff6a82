"""A per-range payload that misbehaves on chosen ranges; every other range runs the demo simulation.

``python misbehaving_payload.py --faults 2:hang,4:hog,6:nooutput,8:crash <demo per-range arguments>``:
the number is the range's index (the fourth field of its id), the behaviour one of

* ``hang``: sleep without writing anything (the looping check kills it: 1150);
* ``hog``: take 400 MB and hold it (the memory check kills it: 1235);
* ``nooutput``: exit 0 without writing the output (1165);
* ``crash``: raise an exception (exit code 1: 1305).
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    """Misbehave as told for this range, else simulate it."""
    faults = dict(part.split(":") for part in argv[argv.index("--faults") + 1].split(","))
    rest = argv[: argv.index("--faults")] + argv[argv.index("--faults") + 2 :]
    index = rest[rest.index("--range-id") + 1].split("-")[3]
    behaviour = faults.get(index, "")
    if behaviour == "hang":
        time.sleep(3600)
    elif behaviour == "hog":
        hog = b"\1" * (400 << 20)  # written, so resident
        time.sleep(3600)
        return len(hog)
    elif behaviour == "nooutput":
        return 0
    elif behaviour == "crash":
        raise RuntimeError(f"injected crash in range {index}")
    from hpcpilot.demo.simulate import main as simulate

    return simulate(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
