"""Batch-script templates: rendering them exactly as Harvester's submitters do.

Harvester's Slurm, PBS and LSF submitters read a template file (``templateFile``) and fill it in with
Python's ``str.format`` (``template.format(**values)``; newer Harvester versions use ``format_map`` with a
dict that leaves unknown names alone). The templates in the package's ``launchers/`` are usable
unchanged as such templates: they contain only the placeholders of `HARVESTER_PLACEHOLDERS`, and every
brace the shell needs is doubled (``${{VAR}}`` renders as ``${VAR}``). ``hpcpilot submit`` renders the
same templates with the values of a `ScriptRequest`, computed as Harvester computes them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hpcpilot.model.errors import ConfigError

#: The placeholders Harvester's batch submitters fill in (PROTOCOLS.md section 5).
HARVESTER_PLACEHOLDERS: tuple[str, ...] = (
    "nCorePerNode",
    "nCoreTotal",
    "nNode",
    "requestRam",
    "requestWalltime",
    "requestWalltimeMinute",
    "accessPoint",
    "harvesterID",
    "workerID",
    "computingSite",
    "pandaQueueName",
    "localQueueName",
    "logDir",
    "jobType",
    "gtag",
)

# characters that would break the batch directives (split at white space) and the double-quoted shell
# words a path is put in
_UNSAFE_PATH = re.compile(r'[\s"`$\\]')


@dataclass(frozen=True)
class ScriptRequest:
    """What one batch job asks for, in the terms of Harvester's placeholders.

    Parameters
    ----------
    n_node
        Nodes (``nNode``).
    n_core_per_node
        Cores per node (``nCorePerNode``).
    walltime_s
        Walltime in seconds (``requestWalltime``; ``requestWalltimeMinute`` is it in minutes, rounded up).
    access_point
        The work directory of the job, an absolute path (``accessPoint``).
    queue
        Partition / queue (``localQueueName``).
    log_dir
        Directory of the batch system's output and error files (``logDir``; empty: the access point).
    worker_id
        Harvester's worker id (``workerID``); part of the job name and the log file names.
    computing_site, panda_queue, harvester_id, job_type, gtag
        ``computingSite``, ``pandaQueueName``, ``harvesterID``, ``jobType``, ``gtag``.
    request_ram_mb
        Memory in MB for the whole job (``requestRam``; 0: not asked for, which Harvester turns into
        1 MB per core).

    Raises
    ------
    ConfigError
        A count or the walltime is below 1, memory is negative, or a path is not absolute or contains
        white space or a character that breaks shell quoting (``"``, ``$``, backquote, backslash); the
        message names the field.
    """

    n_node: int
    n_core_per_node: int
    walltime_s: int
    access_point: str
    queue: str = ""
    log_dir: str = ""
    worker_id: str = "0"
    computing_site: str = ""
    panda_queue: str = ""
    harvester_id: str = ""
    job_type: str = ""
    gtag: str = ""
    request_ram_mb: int = 0

    def __post_init__(self) -> None:
        for name in ("n_node", "n_core_per_node", "walltime_s"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(
                    f"ScriptRequest.{name}: {value} (must be at least 1)", context={"field": name}
                )
        if self.request_ram_mb < 0:
            raise ConfigError(
                f"ScriptRequest.request_ram_mb: {self.request_ram_mb} (must not be negative)",
                context={"field": "request_ram_mb"},
            )
        for name in ("access_point", "log_dir"):
            value = getattr(self, name)
            if not value and name == "log_dir":
                continue
            if not value.startswith("/"):
                raise ConfigError(
                    f"ScriptRequest.{name}: {value!r} is not an absolute path", context={"field": name}
                )
            if _UNSAFE_PATH.search(value):
                raise ConfigError(
                    f"ScriptRequest.{name}: {value!r} contains white space or a character that breaks "
                    "shell quoting",
                    context={"field": name},
                )

    def values(self) -> dict[str, str | int]:
        """Every placeholder of `HARVESTER_PLACEHOLDERS`, computed as Harvester's Slurm submitter does.

        Returns
        -------
        dict[str, str | int]
            ``nCoreTotal`` = nodes x cores per node; ``requestWalltime`` in seconds and
            ``requestWalltimeMinute`` rounded up; ``requestRam`` in MB, at least 1 MB per core (Harvester's
            floor); ``logDir`` the access point when no log directory is given.
        """
        n_core_total = self.n_node * self.n_core_per_node
        return {
            "nCorePerNode": self.n_core_per_node,
            "nCoreTotal": n_core_total,
            "nNode": self.n_node,
            "requestRam": max(self.request_ram_mb, n_core_total),
            "requestWalltime": self.walltime_s,
            "requestWalltimeMinute": -(-self.walltime_s // 60),
            "accessPoint": self.access_point,
            "harvesterID": self.harvester_id,
            "workerID": self.worker_id,
            "computingSite": self.computing_site,
            "pandaQueueName": self.panda_queue,
            "localQueueName": self.queue,
            "logDir": self.log_dir or self.access_point,
            "jobType": self.job_type,
            "gtag": self.gtag,
        }


def template_fields(template_text: str, *, source: str = "template") -> list[str]:
    """The placeholder names a template uses, in order of first use.

    Parameters
    ----------
    template_text
        The template.
    source
        What the template is (a file name), for the error message.

    Raises
    ------
    ConfigError
        The template is not valid ``str.format`` text (a single ``{`` or ``}``), or it has a positional
        field (``{}`` or ``{0}``).
    """
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template_text))
    except ValueError as exc:
        raise ConfigError(
            f"{source}: not a valid template ({exc}); "
            "literal shell braces must be doubled, e.g. ${{VAR}}",
            context={"template": source},
        ) from None
    for _, field, _, _ in parsed:
        if field is None:
            continue
        name = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not name or name.isdigit():
            raise ConfigError(
                f"{source}: positional placeholder {{{field}}}; literal shell braces must be doubled",
                context={"template": source},
            )
        if name not in names:
            names.append(name)
    return names


def render_script(template_text: str, values: Mapping[str, object], *, source: str = "template") -> str:
    """Fill in a batch-script template exactly as ``template_text.format(**values)`` does.

    Parameters
    ----------
    template_text
        The template (``launchers/slurm.sh`` ...).
    values
        The placeholder values (`ScriptRequest.values`, or Harvester's own).
    source
        What the template is (a file name), for error messages.

    Returns
    -------
    str
        The batch script.

    Raises
    ------
    ConfigError
        The template uses a placeholder that ``values`` does not provide (the message names it, and
        suggests doubling the braces if it is shell syntax), or it is not valid ``str.format`` text.
    """
    unknown = [name for name in template_fields(template_text, source=source) if name not in values]
    if unknown:
        listed = ", ".join("{" + name + "}" for name in unknown)
        raise ConfigError(
            f"{source}: unknown placeholder {listed} (known: {', '.join(sorted(values))}); "
            "if it is shell syntax, double the braces: ${{VAR}}",
            context={"template": source, "placeholder": ", ".join(unknown)},
        )
    try:
        return template_text.format(**values)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: cannot be rendered: {exc!r}", context={"template": source}) from None


_DIRECTIVE_WITHOUT_VALUE = re.compile(r"^#(SBATCH|PBS|BSUB)\s+-{1,2}[\w-]+(=|\s*)$")


def drop_empty_directives(script: str) -> str:
    """Remove batch directives whose value rendered empty (``#SBATCH --partition=``, ``#PBS -q``).

    Harvester always has a value for every placeholder (its ``localQueueName`` defaults to ``grid``);
    ``hpcpilot submit`` may leave the queue to the site's default, and the batch systems reject an option
    without a value. Lines that are not such directives are kept unchanged.

    Parameters
    ----------
    script
        A rendered batch script.

    Returns
    -------
    str
        The script without those lines.
    """
    lines = script.splitlines(keepends=True)
    return "".join(line for line in lines if not _DIRECTIVE_WITHOUT_VALUE.match(line.rstrip("\r\n")))


def templates_dir() -> Path:
    """The ``launchers/`` directory of batch-script templates inside the installed ``hpcpilot`` package.

    The templates are package data, read with `importlib.resources`: a source checkout and an installed
    wheel give the same files (``<site-packages>/hpcpilot/launchers/`` once installed).

    Returns
    -------
    Path
        The directory; hpcpilot is installed as plain files (pip never installs it zipped).
    """
    return _package_path("launchers")


def _package_path(name: str) -> Path:
    """The file-system path of the package-data directory ``name`` of ``hpcpilot``."""
    ref = resources.files("hpcpilot") / name
    return ref if isinstance(ref, Path) else Path(str(ref))


def find_template(name: str) -> Path:
    """The batch-script template ``name`` (``slurm``, ``slurm.sh``) in ``launchers/``, or a path.

    Parameters
    ----------
    name
        A template name in the package's ``launchers/`` (`templates_dir`) with or without ``.sh``, or
        the path of a template file (``batch.template``).

    Raises
    ------
    ConfigError
        No such template; the message lists those in ``launchers/``.
    """
    given = Path(name).expanduser()
    if given.is_file() and (given.is_absolute() or "/" in name):
        return given
    folder = templates_dir()
    if "/" not in name and name not in ("", ".", ".."):
        for candidate in (folder / name, folder / f"{name}.sh"):
            if candidate.is_file():
                return candidate
    available = sorted(p.name for p in folder.glob("*.sh")) if folder.is_dir() else []
    raise ConfigError(
        f"batch.template: no template {name!r} in {folder}",
        context={"field": "batch.template", "available": ", ".join(available) or "none"},
    )
