"""Starting pilots: ``hpcpilot launch`` inside an allocation, ``hpcpilot submit`` from a login node.

Both compose two plugin families (a batch system and a launcher), so they live here, beside the
composition root, not in either family.

* ``launch`` (what the ``launchers/`` batch scripts run): discover the allocation, build the launcher's
  argv for one rank per node (or GPU, or core) running ``python -m hpcpilot ARGS``, and ``exec`` it.
* ``submit``: render the batch system's template with Harvester's placeholders, write the script into
  the work directory and submit it (``--dry-run`` prints the script and the command instead).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from hpcpilot.batch.base import BatchSystem
from hpcpilot.batch.script import ScriptRequest, drop_empty_directives, find_template, render_script
from hpcpilot.batch.select import batch_system_class, discover_allocation, make_batch_system
from hpcpilot.config.schema import Settings
from hpcpilot.launch.base import Launcher, Placement
from hpcpilot.model.allocation import parse_duration
from hpcpilot.model.errors import ConfigError, ExitCode, HpcPilotError
from hpcpilot.plugins import load_plugin
from hpcpilot.runtime.atomic import write_text_atomic
from hpcpilot.runtime.commands import CommandResult, run_command

#: Submit command -> batch system, for ``batch.system = auto`` outside an allocation.
SUBMITTERS = (("sbatch", "slurm"), ("qsub", "pbs"), ("bsub", "lsf"))


def launch_argv(settings: Settings, args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The launcher command that starts ``python -m hpcpilot ARGS`` on every node of the allocation.

    Raises
    ------
    HpcPilotError
        No arguments, the allocation cannot be discovered, or the launcher cannot be loaded.
    """
    rest = list(args[1:] if args and args[0] == "--" else args)
    if not rest:
        raise ConfigError("launch: nothing to start; give the ranks' command after --, e.g. -- run")
    cls = batch_system_class(settings.batch.system, env)
    allocation = discover_allocation(settings.batch, env)
    chosen = settings.launch.launcher.strip()
    name = cls.default_launcher if chosen.lower() == "auto" else chosen
    launcher = load_plugin("launchers", name, Launcher)()
    cores = settings.node.cores or len(os.sched_getaffinity(0))
    placement = Placement.from_allocation(allocation, settings.launch.ranks_per, default_cores=cores)
    python = settings.launch.python or sys.executable
    return launcher.argv(placement, [python, "-m", "hpcpilot", *rest], shlex.split(settings.launch.options))


def launch_command(
    settings: Settings,
    args: Sequence[str],
    *,
    dry_run: bool,
    env: Mapping[str, str] | None = None,
    execvp: Callable[[str, list[str]], object] = os.execvp,
) -> int:
    """``hpcpilot launch``: print the launcher command (``dry_run``) or replace this process with it."""
    try:
        argv = launch_argv(settings, args, os.environ if env is None else env)
    except HpcPilotError as exc:
        print(f"hpcpilot launch: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    print(("" if dry_run else "hpcpilot launch: exec ") + shlex.join(argv), flush=True)
    if dry_run:
        return ExitCode.OK
    execvp(argv[0], argv)
    return ExitCode.ERROR  # only reached with an injected execvp that returns


def submit_system(name: str, which: Callable[[str], str | None] = shutil.which) -> type[BatchSystem]:
    """The batch system to submit to: ``batch.system``, or the one whose submit command is on PATH.

    Raises
    ------
    ConfigError
        ``auto`` and none of sbatch, qsub, bsub is on PATH.
    """
    if name.strip().lower() != "auto":
        return batch_system_class(name, {})
    for command, system in SUBMITTERS:
        if which(command):
            return batch_system_class(system, {})
    raise ConfigError("batch.system: auto, but none of sbatch, qsub, bsub is on PATH; set batch.system")


def render_submission(
    settings: Settings, system: type[BatchSystem], nodes: int, cores_per_node: int, site: str
) -> str:
    """The batch script of a submission, rendered from the system's template."""
    if not settings.batch.walltime:
        raise ConfigError("submit: --walltime (batch.walltime) is required")
    try:
        walltime = parse_duration(settings.batch.walltime)
    except ValueError as exc:
        raise ConfigError(f"batch.walltime: {exc}") from None
    if not (settings.batch.template or system.template):
        raise ConfigError(
            f"batch.system: the {system.name} batch system has no batch-script template "
            "(set batch.template, or choose slurm, pbs or lsf)"
        )
    template = find_template(settings.batch.template or system.template)
    workdir = str(Path(settings.run.workdir).resolve())
    request = ScriptRequest(
        n_node=nodes,
        n_core_per_node=cores_per_node or settings.node.cores or os.cpu_count() or 1,
        walltime_s=max(int(walltime), 1),
        access_point=workdir,
        queue=settings.batch.queue,
        computing_site=site,
        worker_id=str(int(time.time())),
    )
    text = render_script(template.read_text(), request.values(), source=str(template))
    return drop_empty_directives(text)


def submit_options(settings: Settings, system: str, site: str = "") -> list[str]:
    """Extra options of the submit command: the account, the site, then ``batch.submit_options``.

    Slurm and LSF pass the submitter's environment (``HPCPILOT_SITE``) to the job; PBS does not, so
    it gets ``-v HPCPILOT_SITE=...``.
    """
    account = settings.batch.account
    flag = {"slurm": ["--account", account], "pbs": ["-A", account], "lsf": ["-P", account]}
    options = flag.get(system, []) if account else []
    if site and system == "pbs":
        options += ["-v", f"HPCPILOT_SITE={site}"]
    return options + shlex.split(settings.batch.submit_options)


def print_template_command(settings: Settings, name: str) -> int:
    """``hpcpilot submit --print-template [NAME]``: write a batch-script template to stdout, unrendered.

    The template is the packaged ``launchers/<NAME>.sh`` (or the file ``NAME``); without a name, that of
    ``batch.template``, else of ``batch.system``. Its path goes to stderr: it is what Harvester's
    submitter takes as ``templateFile``.
    """
    try:
        if not name:
            cls = submit_system(settings.batch.system)
            name = settings.batch.template or cls.template
            if not name:
                raise ConfigError(f"batch.system: the {cls.name} batch system has no batch-script template")
        template = find_template(name)
        text = template.read_text()
    except (HpcPilotError, OSError) as exc:
        print(f"hpcpilot submit: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    sys.stdout.write(text)
    print(f"hpcpilot submit: template {template}", file=sys.stderr)
    return ExitCode.OK


def submit_command(
    settings: Settings,
    *,
    nodes: int,
    cores_per_node: int,
    site: str,
    dry_run: bool,
    run: Callable[..., CommandResult] = run_command,
) -> int:
    """``hpcpilot submit``: write the batch script into the work directory and submit it."""
    try:
        cls = submit_system(settings.batch.system)
        text = render_submission(settings, cls, nodes, cores_per_node, site)
        workdir = Path(settings.run.workdir).resolve()
        script = workdir / f"hpcpilot-{cls.name}-{time.strftime('%Y%m%dT%H%M%S')}.sh"
        env = dict(os.environ, HPCPILOT_SITE=site) if site else dict(os.environ)
        batch = replace(settings.batch, system=cls.name)
        system = make_batch_system(batch, env, lambda argv: run(argv, batch.query_timeout_s, env))
        options = submit_options(settings, cls.name, site)
        if dry_run:
            sys.stdout.write(text)
            print(f"# submit with: {system.describe_submit(script, workdir, options)}")
            return ExitCode.OK
        write_text_atomic(script, text)
        script.chmod(0o755)
        job_id = system.submit(script, workdir, options)
    except HpcPilotError as exc:
        print(f"hpcpilot submit: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    print(f"submitted {script.name} to {cls.name}: job {job_id}")
    return ExitCode.OK
