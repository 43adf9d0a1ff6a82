"""The composition root: argv -> settings -> plugins -> the role of this rank.

Commands (with no command, ``hpcpilot [OPTIONS]`` is ``hpcpilot run [OPTIONS]``: what
``srun -N 512 python -m hpcpilot`` runs on every rank):

    hpcpilot run      [--workdir D] [--site S | --site-config F] [--harvester-config F]
                      [--walltime T] [--set section.key=value ...]
    hpcpilot launch   [same options as run] [--dry-run] -- ARGS...
    hpcpilot submit   --nodes N --walltime T [--site S] [--workdir D] [--dry-run] ...
    hpcpilot submit   --print-template [NAME]
    hpcpilot demo     [--workdir D] [--events N] [--mode streaming|per_range] [--setup-only] ...
    hpcpilot config show  [same options as run]
    hpcpilot config check FILE...
    hpcpilot config sites
    hpcpilot config schema
    hpcpilot plugins
    hpcpilot status   WORKDIR [--monitor-file F] [--json] | --json-schema
    hpcpilot report   WORKDIR [--monitor-file F] [--plot FILE.png] [--json] | --json-schema

Exit codes of ``run`` and ``demo``: 0 every job finished; 3 some job failed; 4 the run ended on a full
disk (1098: free space, then ``run --resume``); 2 bad configuration or unusable work directory; 1 an
unexpected error (the MPI job is aborted).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hpcpilot import __version__
from hpcpilot.model.errors import ConfigError, ExitCode

if TYPE_CHECKING:  # the loader (and PyYAML) is imported on rank 0 only, when settings are loaded
    from hpcpilot.config.loader import LoadedConfig
    from hpcpilot.config.schema import Settings


log = logging.getLogger("hpcpilot.cli")


COMMANDS: tuple[str, ...] = ("run", "demo", "config", "launch", "submit", "plugins", "status", "report")
"""The commands; with none, or with options only, the command is ``run``."""

WORKDIR_VAR = "HPCPILOT_WORKDIR"
"""The work directory when ``--workdir`` is not given (else the current directory)."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="hpcpilot",
        description="An MPI-aware pilot that runs PanDA workloads on supercomputers. "
        "With no command, 'hpcpilot [OPTIONS]' is 'hpcpilot run [OPTIONS]' (what every MPI rank runs: "
        "srun -N 512 python -m hpcpilot).",
    )
    parser.add_argument("--version", action="version", version=f"hpcpilot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")

    run = sub.add_parser(
        "run", help="run the jobs of a work directory (every MPI rank runs this; the default command)"
    )
    _settings_options(run)
    run.add_argument(
        "--resume",
        action="store_true",
        help="take up the work a killed run left in the work directory (its journal)",
    )

    demo = sub.add_parser("demo", help="create the demo event-service job and run it")
    _settings_options(demo)
    demo.add_argument("--events", type=int, default=2000, help="events in the demo job")
    demo.add_argument(
        "--mode",
        choices=("streaming", "per_range"),
        default="streaming",
        help="payload mode of the demo job",
    )
    demo.add_argument(
        "--sleep-per-event", type=float, default=0.005, help="extra seconds per simulated event"
    )
    demo.add_argument(
        "--fail-events", default="", help="comma-separated events whose ranges fail (shows retries)"
    )
    demo.add_argument(
        "--setup-only",
        action="store_true",
        help="only write the job; run it later with 'hpcpilot run'",
    )
    demo.add_argument("--force", action="store_true", help="replace an earlier run in --workdir")

    config = sub.add_parser("config", help="show or check settings")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", help="print the effective settings and their origins")
    _settings_options(show)
    check = config_sub.add_parser("check", help="validate site configuration files")
    check.add_argument("files", nargs="+", type=Path)
    config_sub.add_parser(
        "sites", help="list the site files found on the search path, where each came from, which wins"
    )
    config_sub.add_parser("schema", help="print the JSON Schema of the settings (for editors)")

    launch = sub.add_parser(
        "launch",
        help="start 'python -m hpcpilot ARGS' on every node of this allocation with its launcher",
    )
    _settings_options(launch)
    launch.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    launch.add_argument("args", nargs=argparse.REMAINDER, help="-- then the hpcpilot command of each rank")

    submit = sub.add_parser("submit", help="render a batch-script template (launchers/) and submit it")
    _settings_options(submit)
    submit.add_argument("--nodes", type=int, help="nodes to ask for (required unless --print-template)")
    submit.add_argument("--cores-per-node", type=int, default=0, help="cores per node (default: node.cores)")
    submit.add_argument("--dry-run", action="store_true", help="print the script and command only")
    submit.add_argument(
        "--print-template",
        nargs="?",
        const="",
        metavar="NAME",
        help="print a packaged template (slurm, pbs, lsf; default: batch.template or batch.system's) "
        "unrendered, and its path on stderr",
    )

    sub.add_parser("plugins", help="list plugin families, names, origins and load status")

    status = sub.add_parser("status", help="how a run (going on or ended) stands, from its work directory")
    report = sub.add_parser("report", help="summary tables of a run, and a picture with --plot")
    for inspect, schema in ((status, "hpcpilot.status/1"), (report, "hpcpilot.report/1")):
        inspect.add_argument("workdir", type=Path, nargs="?", help="the run's work directory")
        inspect.add_argument("--monitor-file", default="monitor.h5", help="the time series (monitor.file)")
        inspect.add_argument(
            "--json", action="store_true", help=f"print one JSON document ({schema}) instead of text"
        )
        inspect.add_argument(
            "--json-schema", action="store_true", help="print the JSON Schema of --json and exit"
        )
    report.add_argument("--plot", type=Path, metavar="FILE.png", help="draw utilisation and progress")
    return parser


def _settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir", help=f"work directory (default: ${WORKDIR_VAR}, else the current directory)"
    )
    parser.add_argument(
        "--walltime",
        metavar="T",
        help="the allocation ends T after the start: HH:MM:SS, MM:SS, 45m, 2h or seconds (batch.walltime)",
    )
    parser.add_argument(
        "--harvester-config",
        metavar="PATH",
        help="Harvester's configuration file: file names from its [payload_interaction] section",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--site", help="site configuration by name, on the site search path ('hpcpilot config sites')"
    )
    group.add_argument("--site-config", type=Path, help="site configuration file")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one setting (repeatable)",
    )


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"command line --set {item!r}: expected SECTION.KEY=VALUE")
        overrides[key.strip()] = value
    if args.workdir is not None:
        overrides["run.workdir"] = args.workdir
    if args.walltime is not None:
        overrides["batch.walltime"] = args.walltime
    if args.harvester_config is not None:
        overrides["harvester.config_file"] = str(Path(args.harvester_config).resolve())
    return overrides


def load_settings(args: argparse.Namespace) -> LoadedConfig:
    """Load the layered settings for ``args`` (rank 0 only)."""
    from hpcpilot.config.loader import load_config

    return load_config(site=args.site, site_file=args.site_config, overrides=_overrides(args))


def _with_command(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``run`` put first when it names no command (empty, or options of ``run``)."""
    args = list(argv)
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help", "--version")):
        return ["run", *args]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command (``run`` when none is named); returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(_with_command(sys.argv[1:] if argv is None else argv))
    if args.command == "submit" and args.print_template is None and args.nodes is None:
        parser.error("submit: the following arguments are required: --nodes")
    if args.command == "run":
        return _cmd_run(args)
    if args.command == "demo":
        return _cmd_demo(args)
    if args.command == "config":
        return _cmd_config(args)
    if args.command in ("status", "report"):
        return _cmd_inspect(args)
    if args.command in ("launch", "submit"):
        from hpcpilot.launching import launch_command, print_template_command, submit_command

        try:
            loaded = load_settings(args)
        except ConfigError as exc:
            print(f"hpcpilot: configuration error: {exc}", file=sys.stderr)
            return ExitCode.CONFIG
        if args.command == "launch":
            return launch_command(loaded.settings, args.args, dry_run=args.dry_run)
        if args.print_template is not None:
            return print_template_command(loaded.settings, args.print_template)
        return submit_command(
            loaded.settings,
            nodes=args.nodes,
            cores_per_node=args.cores_per_node,
            site=args.site or "",
            dry_run=args.dry_run,
        )
    return _cmd_plugins()


def _cmd_run(args: argparse.Namespace) -> int:
    from hpcpilot.pilot import run_pilot

    return run_pilot(lambda: _settings_for_run(args), resume=getattr(args, "resume", False))


def _settings_for_run(args: argparse.Namespace) -> Settings:
    loaded = load_settings(args)
    workdir = Path(loaded.settings.run.workdir)
    if not workdir.is_dir():
        raise ConfigError(f"run.workdir: {workdir} is not a directory ({loaded.origins['run.workdir']})")
    from hpcpilot.comm.base import Communicator
    from hpcpilot.plugins import load_plugin

    if loaded.settings.batch.walltime:
        from hpcpilot.model.allocation import parse_duration

        try:
            parse_duration(loaded.settings.batch.walltime)
        except ValueError as exc:
            raise ConfigError(f"batch.walltime: {exc} ({loaded.origins['batch.walltime']})") from None
    communicator = load_plugin("communicators", loaded.settings.run.communicator, Communicator)
    communicator.check_settings(loaded.settings)  # a bad setting ends the run here, cleanly
    return loaded.settings


def _cmd_demo(args: argparse.Namespace) -> int:
    from hpcpilot.demo.jobs import demo_job, write_demo

    workdir = Path(args.workdir or os.environ.get(WORKDIR_VAR) or ".").resolve()
    try:
        fail = [int(e) for e in args.fail_events.split(",") if e.strip()]
        job = demo_job(
            n_events=args.events,
            mode=args.mode,
            sleep_per_event=args.sleep_per_event,
            fail_events=fail,
        )
        path = write_demo(workdir, [job], force=args.force)
    except (ValueError, OSError) as exc:
        print(f"hpcpilot demo: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    print(
        f"demo job {job['PandaID']} ({args.events} events, {args.mode} mode) written to {path}",
        file=sys.stderr,
    )
    if args.setup_only:
        return ExitCode.OK
    args.workdir = str(workdir)
    return _cmd_run(args)


def _cmd_config(args: argparse.Namespace) -> int:
    from hpcpilot.config.loader import check_config_file, find_sites, format_config, format_sites

    if args.config_command == "sites":
        sys.stdout.write(format_sites(find_sites()))
        return ExitCode.OK
    if args.config_command == "show":
        try:
            loaded = load_settings(args)
        except ConfigError as exc:
            print(f"hpcpilot: configuration error: {exc}", file=sys.stderr)
            return ExitCode.CONFIG
        sys.stdout.write(format_config(loaded))
        return ExitCode.OK
    if args.config_command == "schema":
        import json

        from hpcpilot.config.jsonschema import settings_json_schema

        print(json.dumps(settings_json_schema(), indent=2))
        return ExitCode.OK
    from hpcpilot.comm.harvester_files import mapping_warnings
    from hpcpilot.plugins import unknown_plugin_names

    status = ExitCode.OK
    for path in args.files:
        warnings: list[str] = []
        try:
            settings = check_config_file(path)
            problems = unknown_plugin_names(settings)
            warnings = mapping_warnings(settings)
        except ConfigError as exc:
            problems = [str(exc)]
        for warning in warnings:
            print(f"WARN {path}: {warning}")
        for problem in problems:
            print(f"FAIL {path}: {problem}")
        if problems:
            status = ExitCode.CONFIG
        else:
            print(f"ok   {path}")
    return status


def _cmd_inspect(args: argparse.Namespace) -> int:
    import time

    from hpcpilot.monitor import present, statusjson, statusview
    from hpcpilot.monitor.workdir import read_run

    if args.json_schema:
        schema = statusjson.status_schema() if args.command == "status" else statusjson.report_schema()
        sys.stdout.write(statusjson.dumps(schema))
        return ExitCode.OK
    if args.workdir is None:
        print(f"hpcpilot {args.command}: the run's work directory is missing", file=sys.stderr)
        return ExitCode.CONFIG
    workdir = args.workdir.resolve()
    if not workdir.is_dir():
        print(f"hpcpilot {args.command}: {workdir} is not a directory", file=sys.stderr)
        return ExitCode.CONFIG
    run = read_run(workdir, args.monitor_file)
    now = time.time()
    if args.command == "status":
        status = statusview.build_status(
            run.view, run.live, run.data, str(workdir), now, run.summary, run.summary_t
        )
        if args.json:
            sys.stdout.write(statusjson.dumps(statusjson.status_document(status)))
        else:
            sys.stdout.write(present.render_status(status))
        return ExitCode.OK
    report = statusview.build_report(run.view, run.data, run.summary, str(workdir), now)
    if args.json:
        sys.stdout.write(statusjson.dumps(statusjson.report_document(report)))
    else:
        sys.stdout.write(present.render_report(report))
    if args.plot is not None:
        from hpcpilot.monitor.plot import plot_run

        try:
            plot_run(run.view, run.data, args.plot, title=f"hpcpilot run in {workdir.name}")
        except ConfigError as exc:
            print(f"hpcpilot report: {exc}", file=sys.stderr)
            return ExitCode.CONFIG
        print(f"picture written to {args.plot}", file=sys.stderr)
    return ExitCode.OK


def _cmd_plugins() -> int:
    from hpcpilot.plugins import describe_plugins

    infos = describe_plugins()
    width = max((len(i.family) + len(i.name) for i in infos), default=10) + 3
    for info in infos:
        state = "loads" if info.loads else f"FAILS: {info.error}"
        print(f"{info.family + ' / ' + info.name:<{width}} {state:<6} {info.origin}")
    return ExitCode.OK if all(i.loads for i in infos) else ExitCode.ERROR
