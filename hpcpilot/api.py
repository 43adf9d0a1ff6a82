"""The Pilot API: stage-in/out, checksums, the batch allocation and settings, for code outside the pilot.

Harvester plugins (preparators, stagers, monitors) and site scripts call these functions directly, on a
login or edge node, without knowing how hpcpilot is built inside. The names in ``__all__`` are the
stable surface: their signatures change only by adding keyword arguments with defaults. Every other
module of ``hpcpilot`` is internal and may change between releases.

``import hpcpilot.api`` is light: it imports the model and settings classes (standard library only);
the staging clients, copytools, batch-system plugins and the configuration loader (``yaml``) are
imported when a function first needs them. Nothing here imports ``mpi4py``, ``h5py`` or ``numpy``.

Errors: bad input raises an `HpcPilotError` subclass carrying a PanDA error ``code``
(`JobDefinitionError`, `StagingError`, `ConfigError`, `PluginError`, `BatchSystemError`). A file that
fails to move is not an exception: it is a `TransferResult` with ``ok`` False, its ``error_code``
(1099/1137 failed, 1103 no such file, 1151/1152 timeout, 1165 missing output, 1171/1172 checksum
mismatch) and ``error_diag``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcpilot.config.schema import BatchSettings, DataSettings, Settings
from hpcpilot.data.transfer import Direction, Transfer, TransferResult
from hpcpilot.model.allocation import Allocation
from hpcpilot.model.errors import (
    BatchSystemError,
    ConfigError,
    ErrorCode,
    HpcPilotError,
    JobDefinitionError,
    PluginError,
    StagingError,
)
from hpcpilot.model.job import Checksum, ChecksumAlgorithm, FileSpec, Job
from hpcpilot.model.job import parse_job as _parse_job

if TYPE_CHECKING:
    from hpcpilot.runtime.commands import CommandRunner

__all__ = [
    "Allocation",
    "BatchSettings",
    "BatchSystemError",
    "Checksum",
    "ConfigError",
    "DataSettings",
    "Direction",
    "ErrorCode",
    "FileSpec",
    "HpcPilotError",
    "Job",
    "JobDefinitionError",
    "PluginError",
    "Settings",
    "StagingError",
    "Transfer",
    "TransferResult",
    "allocation",
    "checksum",
    "checksum_spec",
    "load_settings",
    "parse_job",
    "stage_in",
    "stage_in_files",
    "stage_out",
    "verify_checksum",
]

StrPath = str | os.PathLike[str]

_ALGORITHMS = {
    "adler32": ChecksumAlgorithm.ADLER32,
    "ad": ChecksumAlgorithm.ADLER32,
    "md5": ChecksumAlgorithm.MD5,
}


# --------------------------------------------------------------------------- checksums


def _algorithm(name: str) -> ChecksumAlgorithm:
    try:
        return _ALGORITHMS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown checksum algorithm {name!r}: use 'adler32' or 'md5'") from None


def checksum(path: StrPath, algorithm: str = "adler32") -> str:
    """The checksum of a file as lower-case hex digits, streaming (constant memory).

    Parameters
    ----------
    path
        The file.
    algorithm
        ``"adler32"`` (or ``"ad"``; 8 hex digits) or ``"md5"`` (32 hex digits), any case.

    Returns
    -------
    str
        The hex value, e.g. ``"0a1b2c3d"``.

    Raises
    ------
    ValueError
        The algorithm is neither adler32 nor md5.
    OSError
        The file cannot be read (``FileNotFoundError`` if it does not exist).
    """
    from hpcpilot.data.checksums import checksum_of_file

    return checksum_of_file(path, _algorithm(algorithm)).value


def checksum_spec(path: StrPath, algorithm: str = "adler32") -> str:
    """The checksum of a file in PanDA's wire form: ``"ad:<8 hex>"`` or ``"md5:<32 hex>"``.

    This is the form of the job dict's ``checksum`` field and of a file's ``checksum`` in the job
    report. Parameters and errors as for `checksum`.

    Returns
    -------
    str
        E.g. ``"ad:0a1b2c3d"``.
    """
    from hpcpilot.data.checksums import checksum_of_file

    return str(checksum_of_file(path, _algorithm(algorithm)))


def verify_checksum(path: StrPath, expected: str | Checksum) -> bool:
    """Whether a file has the expected checksum.

    Parameters
    ----------
    path
        The file.
    expected
        ``"ad:<hex>"``, ``"md5:<hex>"``, a bare 8-digit hex value (adler32, as old jobs give it), any
        case, or a `Checksum`. The algorithm of ``expected`` is the one computed.

    Returns
    -------
    bool
        True if the file's checksum equals ``expected``.

    Raises
    ------
    ValueError
        ``expected`` is malformed or of an unknown algorithm.
    OSError
        The file cannot be read.
    """
    from hpcpilot.data.checksums import checksum_of_file

    wanted = expected if isinstance(expected, Checksum) else Checksum.parse(expected)
    return checksum_of_file(path, wanted.algorithm) == wanted


# --------------------------------------------------------------------------- jobs and settings


def parse_job(job: Mapping[str, Any], source: str = "api") -> Job:
    """Parse a PanDA job dict (as the server or Harvester sends it) into a typed `Job`.

    Parameters
    ----------
    job
        The job dict: ``PandaID``, ``inFiles``, ``checksum``, ``fsize``, ``scopeIn``, ``outFiles``,
        ``logFile``, ...
    source
        Where the dict came from (a file, a worker id): named in every error.

    Returns
    -------
    Job
        The job, with its `FileSpec` inputs, outputs and log.

    Raises
    ------
    JobDefinitionError
        A field is missing (``PandaID``), has the wrong type, or the per-file lists are not aligned;
        the message names ``source``, the PandaID and the field.
    """
    return _parse_job(job, source=source)


def load_settings(
    site: str | None = None,
    config_file: StrPath | None = None,
    overrides: Mapping[str, str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """The settings the pilot would run with, from the same layers as ``hpcpilot run``.

    Layers, later wins: the built-in defaults, the site file, the user file ``$HPCPILOT_CONFIG``, the
    ``HPCPILOT_<SECTION>__<KEY>`` variables of ``env`` and ``overrides``.

    Parameters
    ----------
    site
        A site file's name, looked up as ``hpcpilot run --site`` does (``$HPCPILOT_SITE_PATH``, the
        user's ``~/.config/hpcpilot/sites``, then the packaged ``site_configs``).
    config_file
        The path of a site file instead; give ``site`` or ``config_file``, not both.
    overrides
        ``{"section.key": "value"}`` as with ``--set``, e.g. ``{"data.stagein_tools": "xrdcp,cp"}``.
    env
        The environment (default: this process's).

    Returns
    -------
    Settings
        The merged, validated settings; ``settings.data`` and ``settings.batch`` go to `stage_in`,
        `stage_out` and `allocation`.

    Raises
    ------
    ConfigError
        An unknown site, an unreadable or invalid file, variable or override (the message names the
        source and the key).
    """
    from hpcpilot.config.loader import load_config

    site_file = None if config_file is None else Path(config_file)
    return load_config(site=site, site_file=site_file, env=env, overrides=overrides).settings


def _job(job: Mapping[str, Any] | Job) -> Job:
    return job if isinstance(job, Job) else _parse_job(job, source="api")


def _data(settings: Settings | DataSettings | None) -> DataSettings:
    if settings is None:
        return DataSettings()
    if isinstance(settings, Settings):
        return settings.data
    return settings


# --------------------------------------------------------------------------- staging


def stage_in(
    job: Mapping[str, Any] | Job,
    job_dir: StrPath,
    *,
    source: str | None = None,
    tools: str | None = None,
    settings: Settings | DataSettings | None = None,
    top: StrPath | None = None,
    env: Mapping[str, str] | None = None,
) -> list[TransferResult]:
    """Bring a job's input files into its directory, verified, and wait until they are there.

    An input already in ``job_dir`` (a file, or a link to one: Harvester links inputs in) or in
    ``top`` is left alone. Every other input is copied from ``source`` with the copytools of ``tools``,
    tried in order, with the retries and time limits of ``settings``; each copy is checked against the
    job's ``fsize`` and ``checksum`` (adler32 or md5).

    Parameters
    ----------
    job
        The PanDA job dict, or a `Job` from `parse_job`.
    job_dir
        Where the inputs go (created if missing).
    source
        Where the inputs are: a directory (``/lustre/atlas/inputs``) or a URL template with
        ``{lfn}``, ``{scope}``, ``{dataset}``, ``{panda_id}``, ``{endpoint}``, ``{rucio_path}``
        (``root://se.example.org:1094//atlas/rucio/{rucio_path}``). Default: ``data.stagein_source``.
    tools
        Comma-separated copytool names (``"cp"``, ``"xrdcp,gfal"``, ``"rucio"``). Default:
        ``data.stagein_tools`` (``"cp"``).
    settings
        The settings (or only their ``data`` section): retries, backoff and time limits. Default:
        the built-in defaults.
    top
        Another directory where inputs may already be (the work directory's top).
    env
        The environment of the copytools' commands (default: this process's).

    Returns
    -------
    list of TransferResult
        One per input that had to be moved, in the job's order (empty when every input was in place).
        A failed file has ``ok`` False, its ``error_code`` and ``error_diag``.

    Raises
    ------
    JobDefinitionError
        ``job`` is a dict that is not a valid job.
    StagingError
        Before anything moves: an input is missing and there is no ``source`` (1103); a ``source``
        template needs a field the job does not give, or an input's name is not a plain file name
        (1099).
    PluginError
        A copytool of ``tools`` is not installed.
    """
    import dataclasses

    from hpcpilot.data.staging import StageInClient

    parsed = _job(job)
    data = _data(settings)
    if source is not None:
        data = dataclasses.replace(data, stagein_source=source)
    client = StageInClient.from_settings(data, tools=tools, env=env)
    transfers = client.plan(parsed, Path(job_dir), None if top is None else Path(top))
    return client.transfer(transfers)


def stage_in_files(
    files: Sequence[FileSpec | str],
    dest_dir: StrPath,
    *,
    source: str | None = None,
    tools: str | None = None,
    settings: Settings | DataSettings | None = None,
    panda_id: int = 0,
    env: Mapping[str, str] | None = None,
) -> list[TransferResult]:
    """`stage_in` for files without a job dict: bring ``files`` into ``dest_dir``, verified.

    Parameters
    ----------
    files
        `FileSpec` objects (LFN, and when known size, checksum, scope, dataset, endpoint), or bare
        LFNs (then nothing is verified but that the file arrived).
    dest_dir
        Where the files go (created if missing); a file already there is left alone.
    source, tools, settings, env
        As for `stage_in`.
    panda_id
        The value of ``{panda_id}`` in a ``source`` template.

    Returns
    -------
    list of TransferResult
        One per file that had to be moved, in order.

    Raises
    ------
    StagingError, PluginError
        As for `stage_in`.
    """
    specs = tuple(FileSpec(f) if isinstance(f, str) else f for f in files)
    return stage_in(
        Job(panda_id=panda_id, input_files=specs),
        dest_dir,
        source=source,
        tools=tools,
        settings=settings,
        env=env,
    )


def stage_out(
    job: Mapping[str, Any] | Job,
    files: Sequence[StrPath],
    *,
    destination: str | None = None,
    tools: str | None = None,
    settings: Settings | DataSettings | None = None,
    log: bool = False,
    env: Mapping[str, str] | None = None,
) -> list[TransferResult]:
    """Send a job's output files (or its log tarball) to their destination, verified, and wait.

    Each file's size and adler32 are computed first (a missing file is a failed result with 1165);
    a tool writing to storage verifies end to end, a copy to a directory is checked by hpcpilot.
    The result's ``fsize`` and ``checksum`` are what the job report needs.

    Parameters
    ----------
    job
        The PanDA job dict, or a `Job` from `parse_job`: a file is matched to its output by name,
        for the scope, dataset and endpoint of the destination template (a name the job does not
        declare goes out with its name alone).
    files
        Local paths of the files to send.
    destination
        A directory or URL template (see `stage_in`'s ``source``). Default:
        ``data.stageout_destination``, or for the log ``data.log_destination`` falling back to it.
    tools
        Comma-separated copytool names. Default: ``data.stageout_tools`` (for the log
        ``data.log_tools`` falling back to it).
    settings
        As for `stage_in`.
    log
        ``files`` is the job's log tarball (exactly one file), described by the job's ``logFile``.
    env
        The environment of the copytools' commands.

    Returns
    -------
    list of TransferResult
        One per file, in order.

    Raises
    ------
    JobDefinitionError
        ``job`` is a dict that is not a valid job.
    StagingError
        Before anything moves (1137): no destination is configured, the template needs a field the
        job does not give, or ``log`` with other than one file.
    PluginError
        A copytool of ``tools`` is not installed.
    """
    from hpcpilot.data.staging import StageOutClient

    parsed = _job(job)
    data = _data(settings)
    paths = [Path(f) for f in files]
    if log and len(paths) != 1:
        raise StagingError(
            f"stage_out(log=True) takes the log tarball alone, got {len(paths)} files",
            code=ErrorCode.STAGE_OUT_FAILED,
            context={"PandaID": parsed.panda_id},
        )
    client = StageOutClient.from_settings(data, log=log, tools=tools, destination=destination, env=env)
    return client.transfer(client.plan(parsed, client.described(parsed, paths, log=log)))


# --------------------------------------------------------------------------- allocation


def allocation(
    batch: str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    settings: Settings | BatchSettings | None = None,
    run: CommandRunner | None = None,
) -> Allocation:
    """What the batch system says about the current batch job: nodes, cores, GPUs, end time.

    Parameters
    ----------
    batch
        The batch system: ``"auto"`` (Slurm, PBS or LSF, whichever job environment this is, else
        ``local``: this host), ``"slurm"``, ``"pbs"``, ``"lsf"``, ``"local"`` or a plugin name.
        Default: ``batch.system`` of ``settings`` (``"auto"``).
    env
        The environment to read the job's variables from (default: this process's).
    settings
        The settings (or only their ``batch`` section): the query timeout; ``batch.walltime`` is not
        applied.
    run
        Runs the batch system's query commands (``squeue``, ``qstat``, ``bjobs``); default: run them.
        Tests inject a replay.

    Returns
    -------
    Allocation
        ``batch_system``, ``job_id``, ``nodes`` (expanded host names), ``cores_per_node``,
        ``gpus_per_node``, ``queue``, ``account`` and ``end_time`` (epoch seconds, None without a
        limit); ``remaining_s(time.time())`` gives the seconds left.

    Raises
    ------
    PluginError
        No such batch system.
    BatchSystemError
        The batch system's commands failed or answered nonsense.
    """
    import dataclasses

    from hpcpilot.batch.select import discover_allocation

    if settings is None:
        batch_settings = BatchSettings()
    elif isinstance(settings, Settings):
        batch_settings = settings.batch
    else:
        batch_settings = settings
    if batch is not None:
        batch_settings = dataclasses.replace(batch_settings, system=batch)
    return discover_allocation(batch_settings, os.environ if env is None else env, run)
