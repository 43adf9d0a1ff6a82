"""Record what a real module tool prints in ``python`` mode, for tests/unit/test_environment_modules.py.

    python tests/data/lmod/capture.py lmod [TOOL...]        -> tests/data/lmod/
    python tests/data/lmod/capture.py modulecmd [TOOL...]   -> tests/data/modulecmd/

TOOL defaults to Debian's Lmod (/usr/share/lmod/lmod/libexec/lmod) or ``modulecmd``; a Tcl
``modulecmd.tcl`` unpacked from the environment-modules .deb runs as ``tclsh .../modulecmd.tcl``.
The modulefiles of ``<dir>/modulefiles`` are copied to /tmp/hpcpilot-modules/<kind>/ first, so the
paths in the recordings do not depend on the checkout. Each step runs with the environment the
previous steps produced (applied by executing the tool's output on a plain dict, independently of the
parser under test) and is stored as ``<step>.stdout``, ``<step>.stderr`` and an entry of ``steps.json``
(arguments, exit code, the environment it ran with).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = Path("/tmp/hpcpilot-modules")


def apply(code: str, env: dict[str, str]) -> dict[str, str]:
    """The environment after the tool's Python output ran (on a copy; ``import os`` left out)."""
    environ = dict(env)
    body = "\n".join(line for line in code.splitlines() if line.strip() != "import os")
    exec(body, {"os": types.SimpleNamespace(environ=environ, chdir=lambda path: None)})
    return environ


def main(kind: str, tool: list[str]) -> None:
    out = HERE.parent / kind
    tree = ROOT / kind / "modulefiles"
    core = ROOT / kind / "core"
    shutil.rmtree(ROOT / kind, ignore_errors=True)
    shutil.copytree(out / "modulefiles", tree)
    core.mkdir(parents=True)
    base = {"PATH": "/usr/bin:/bin", "HOME": "/root", "MODULEPATH": str(core), "TESTPKG_OLD": "old"}
    # the sequences ModulesEnvironment.prepare runs: use -> load, and use -> purge -> load
    steps = [
        ("use", ["use", str(tree)], "base"),
        ("load", ["load", "testpkg/1.0", "other"], "use"),
        ("purge", ["purge"], "use"),
        ("load_after_purge", ["load", "testpkg/1.0", "other"], "purge"),
        ("purge_loaded", ["purge"], "load"),
        ("load_missing", ["load", "nosuch/1.0"], "use"),
    ]
    if kind == "lmod":
        steps.append(("load_quirks", ["load", "quirks"], "use"))
    envs = {"base": base}
    record = []
    for name, args, start in steps:
        env = envs[start]
        done = subprocess.run([*tool, "python", *args], env=env, capture_output=True, text=True, check=False)
        (out / f"{name}.stdout").write_text(done.stdout)
        (out / f"{name}.stderr").write_text(done.stderr)
        record.append({"step": name, "args": args, "exit_code": done.returncode, "env": env})
        envs[name] = apply(done.stdout, env)
        print(f"{name}: exit {done.returncode}, {len(done.stdout)} bytes out, {len(done.stderr)} bytes err")
    asks = [*tool, "--version"] if kind == "lmod" else [*tool, "python", "--version"]
    version = subprocess.run(asks, capture_output=True, text=True, check=False)
    meta = {
        "tool": tool,
        "version": (version.stdout + version.stderr).strip().splitlines()[:3],
        "steps": record,
    }
    (out / "steps.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    which = sys.argv[1]
    default = ["/usr/share/lmod/lmod/libexec/lmod"] if which == "lmod" else ["modulecmd"]
    main(which, sys.argv[2:] or default)
