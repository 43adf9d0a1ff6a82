"""The settings tree: frozen dataclasses, one per section, with their built-in defaults.

Every field here can be set in a site file (``site_configs/<site>.yaml``), the user file
(``$HPCPILOT_CONFIG``), the environment (``HPCPILOT_<SECTION>__<KEY>``) or on the command line
(``--set section.key=value``). ``docs/configuration.md`` lists them all.

A field's type is its whole rule, read by the loader (`hpcpilot.config.loader`) and by ``hpcpilot
config schema``: ``Literal[...]`` lists the allowed words (matched case-insensitively), ``Annotated[...,
Bounds(...)]`` bounds a number (a number without bounds must not be negative), and ``tuple[str, ...]``
is a list (a YAML list in a file, comma-separated in the environment and on the command line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from hpcpilot.model.bounds import RANGE_EVENTS


@dataclass(frozen=True)
class Bounds:
    """The allowed interval of a numeric setting, as ``Annotated`` metadata on its field.

    Attributes
    ----------
    minimum
        Smallest allowed value.
    maximum
        Largest allowed value (None: no limit).
    """

    minimum: float = 0
    maximum: float | None = None


def split_list(text: str) -> tuple[str, ...]:
    """A comma-separated list setting, as given in the environment or with ``--set``, as its items.

    Items are stripped; empty ones are dropped (``" cp , symlink,"`` -> ``("cp", "symlink")``).
    """
    return tuple(item.strip() for item in text.split(",") if item.strip())


Names = tuple[str, ...]
"""A list setting: plugin names, module names, bind mounts ... in order."""

AtLeastOne = Annotated[int, Bounds(minimum=1)]
"""A count that must be at least one."""

Rate = Annotated[float, Bounds(minimum=0.01)]
"""A period in seconds that must not spin: at least 10 ms."""

Timeout = Annotated[float, Bounds(minimum=0.1)]
"""A timeout in seconds: at least 100 ms."""

GpuVendor = Literal["auto", "nvidia", "amd", "intel"]
"""A GPU vendor, or ``auto``: the one the node shows."""

EventsPerRange = Annotated[int, Bounds(minimum=1, maximum=RANGE_EVENTS.maximum)]
"""Events in one range the pilot cuts: as many as PanDA's range ids can number."""


@dataclass(frozen=True)
class RunSettings:
    """What to run and where.

    Attributes
    ----------
    workdir
        The work directory (Harvester's access point): job files in, results, outputs, journal and logs.
    communicator
        The communicator plugin that talks to the workload manager (``local``).
    max_jobs
        Stop taking jobs after this many (0: no limit).
    status_interval_s
        Seconds between two updates of rank 0's status line.
    status_mode
        How the status line is shown: ``redraw`` (one line rewritten in place, for a terminal),
        ``lines`` (plain lines, every 2 s at first, every 10 s after 30 s, every minute after 10 min:
        for logs), or ``auto`` (``redraw`` if rank 0's stderr is a terminal, else ``lines``; under
        ``mpiexec``/``srun`` it is a pipe even when the launcher's output is a terminal).
    log_level
        Logging level of the pilot's own loggers (DEBUG, INFO, WARNING, ERROR).
    """

    workdir: str = "."
    communicator: str = "local"
    max_jobs: int = 0
    status_interval_s: float = 1.0
    status_mode: Literal["auto", "redraw", "lines"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


@dataclass(frozen=True)
class LocalSettings:
    """The local communicator: a job directory in Harvester's file shapes.

    Attributes
    ----------
    jobs_file
        The job file in the work directory: ``{"<PandaID>": {job dict}}``.
    ranges_file
        An optional range feed: ``{"<PandaID>": [range, ...]}``.
    events_per_range
        For an event-service job without a range feed: events per range when the pilot cuts them.
    """

    jobs_file: str = "HPCJobs.json"
    ranges_file: str = "JobsEventRanges.json"
    events_per_range: EventsPerRange = 10


@dataclass(frozen=True)
class HarvesterSettings:
    """The ``harvester`` communicator: Harvester's shared-file protocol in the access point.

    Attributes
    ----------
    config_file
        Harvester's configuration file (``panda_harvester.cfg``): the file names are read from its
        ``[payload_interaction]`` section; names it does not set keep their usual values.
    job_spec_format
        ``json`` or ``cgi`` (urlencoded), as Harvester's messenger ``jobSpecFileFormat``.
    mapping_type
        How the worker's jobs map to it, Harvester's ``mapType`` of the queue: ``OneToOne`` and
        ``OneToMany`` (reports at the top of the access point), ``ManyToOne`` (reports in
        ``<accessPoint>/<PandaID>/``), or ``auto``: inferred per job from where Harvester put its
        spec (one job at the top: ``OneToOne``; a spec, or the directory Harvester makes, in
        ``<accessPoint>/<PandaID>/``, or several jobs listed: ``ManyToOne``).
    request_jobs
        Whether the queue lets the worker ask for more jobs (``worker_requestjob.json``) for idle slots.
    job_wait_s
        How long an idle run waits for requested jobs before it concludes that none will come.
    request_threshold
        Ask for more ranges of a job when fewer than this many are cached here (0: derived from the
        slots, the prefetch and the use rate, `hpcpilot.comm.prefetch`).
    request_ranges
        ``nRanges`` of one request (0: derived, `hpcpilot.comm.prefetch`; at most
        ``eventservice.request_max``).
    poll_s
        Seconds between two looks at the access point (new jobs, ranges, kill files).
    report_interval_s
        Longest a range's outcome waits before ``event_status.dump.json`` is written.
    heartbeat_s
        Seconds between two ``running`` worker attributes of every job, and touches of the heartbeat file.
    pack_ranges
        Pack each batch of per-range outputs into one tar file, declared as ``zip_output``.
    softkill_file, kill_file
        Files an operator creates in the access point: softkill (no new work, finish what runs, end
        normally) and tobekilled (stop now, jobs fail with 1144). Content: nothing, or
        ``{"PandaIDs": [...]}`` to name jobs.
    """

    config_file: str = ""
    job_spec_format: Literal["json", "cgi"] = "json"
    mapping_type: Literal["auto", "OneToOne", "OneToMany", "ManyToOne"] = "auto"
    request_jobs: bool = False
    job_wait_s: float = 600.0
    request_threshold: int = 0
    request_ranges: int = 0
    poll_s: Rate = 1.0
    report_interval_s: float = 5.0
    heartbeat_s: float = 60.0
    pack_ranges: bool = False
    softkill_file: str = "pilot_softkill.json"
    kill_file: str = "pilot_tobekilled.json"


@dataclass(frozen=True)
class PandaSettings:
    """The ``panda`` communicator: the PanDA server over HTTPS.

    Attributes
    ----------
    url
        The server's base URL (``https://host:25443``).
    api
        ``v1`` (``/api/v1/...``) or ``legacy`` (``/server/panda/...``).
    site_name, computing_element, prod_source_label, resource_type
        What ``acquire_jobs`` asks for.
    harvester_id, worker_id
        Sent with job requests when set.
    proxy
        X.509 proxy (certificate and key in one file) used as client certificate (default:
        ``$X509_USER_PROXY``).
    token_file
        File holding an OIDC token sent as ``Authorization: Bearer`` (instead of a proxy).
    origin
        The ``Origin`` header sent with a token (the VO, e.g. ``atlas``).
    allow_insecure_token
        Send the token over a plain ``http://`` URL (a test server only); without it such a URL
        with a token stops the run at its start.
    ca_path
        CA certificates: a directory (``$X509_CERT_DIR``) or a bundle file; empty: the system's.
    timeout_s
        Timeout of one HTTP call.
    retries
        Attempts of one call before it is put back in the outbox.
    backoff_s, backoff_max_s
        First and longest pause between attempts (doubling, with jitter).
    heartbeat_s
        Seconds between two ``running`` updates of every job.
    outbox_max
        Most updates kept on disk while the server is unreachable.
    gzip
        Send request bodies gzipped.
    request_threshold
        Ask for more ranges of a job when fewer than this many are cached here (0: derived from the
        slots, the prefetch and the use rate, `hpcpilot.comm.prefetch`).
    request_ranges
        ``n_ranges`` of one request for ranges (0: derived, `hpcpilot.comm.prefetch`; at most
        ``eventservice.request_max``).
    give_up_s
        How long requests for jobs or ranges keep being retried while the server cannot be reached
        before the error reaches the run (updates are never given up: they wait in the outbox).
    close_wait_s
        At the end of the run, how long the pilot waits for the outbox to empty; what is left stays on
        disk and is sent by the next run in the same work directory.
    """

    url: str = ""
    api: Literal["v1", "legacy"] = "v1"
    site_name: str = ""
    computing_element: str = ""
    prod_source_label: str = "managed"
    resource_type: str = ""
    harvester_id: str = ""
    worker_id: str = ""
    proxy: str = ""
    token_file: str = ""
    origin: str = ""
    allow_insecure_token: bool = False
    ca_path: str = ""
    timeout_s: Timeout = 60.0
    retries: AtLeastOne = 3
    backoff_s: float = 2.0
    backoff_max_s: float = 300.0
    heartbeat_s: float = 1800.0
    outbox_max: AtLeastOne = 100000
    gzip: bool = True
    request_threshold: int = 0
    request_ranges: int = 0
    give_up_s: float = 1800.0
    close_wait_s: float = 60.0


@dataclass(frozen=True)
class EventServiceSettings:
    """How event-service jobs are run.

    Attributes
    ----------
    mode
        Payload plugin for event ranges: ``auto`` (``per_range`` if the job's command has a range
        placeholder, else ``streaming``), ``per_range``, ``streaming``, or any ``hpcpilot.payloads``
        plugin name (``sleep`` for benchmarks).
    max_attempts
        Attempts per range before it is declared ``fatal`` (1 to 1000: rank 0 counts them in 16 bits).
    prefetch_per_slot
        Ranges a worker keeps queued per slot, so no slot waits for a round trip to rank 0.
    merger
        How per-range outputs become one output per job: ``auto`` (by the output's extension),
        ``none``, or an ``hpcpilot.mergers`` plugin name (``hdf5``).
    exhausted_status
        How a range that used all its attempts here is reported to the workload manager: ``failed``
        (the server may retry it elsewhere) or ``fatal`` (never retried).
    range_wait_s
        Longest an event-service job waits with no range to run (none arrived, none queued or
        running) before it ends: with no range ever, it fails with 1238 (``ES_NO_EVENTS``) naming
        the reason; never waits past the walltime margin. 0: no bound but the walltime.
    request_horizon_s
        A request for ranges asks for what keeps the slots busy this long (at the measured use rate),
        besides the ranges that fill every slot and its prefetch (`hpcpilot.comm.prefetch`).
    request_max
        The most ranges one request may ask for.
    """

    mode: str = "auto"
    max_attempts: Annotated[int, Bounds(minimum=1, maximum=1000)] = 3
    prefetch_per_slot: AtLeastOne = 2
    merger: str = "auto"
    exhausted_status: Literal["failed", "fatal"] = "failed"
    range_wait_s: float = 300.0
    request_horizon_s: float = 60.0
    request_max: AtLeastOne = 10000


@dataclass(frozen=True)
class NodeSettings:
    """The node a worker rank owns, and how its slots are placed on it.

    Attributes
    ----------
    cores
        Cores of the node (0: the CPUs this process may run on); worker ranks that share a node divide
        them.
    gpus
        GPUs of the node (-1: as the batch system's allocation says, else what the node shows: the
        visible-devices variables, ``nvidia-smi -L``, ``rocm-smi``, ``/dev``; 0: none). Worker ranks that
        share a node divide them.
    gpus_per_slot
        0: payloads see every GPU of the node. N: each slot gets N GPUs of its own (selected with the
        vendor's variable), and a node runs at most ``gpus // N`` slots at once.
    gpu_vendor
        ``auto`` (the vendor found with the GPUs, else nvidia), ``nvidia`` (``CUDA_VISIBLE_DEVICES``),
        ``amd`` (``ROCR_VISIBLE_DEVICES``) or ``intel`` (``ZE_AFFINITY_MASK``): the variable that selects
        a slot's GPUs, and the container's GPU flag.
    bind_cpus
        Pin each slot's payloads to cores of their own (CPU affinity).
    """

    cores: int = 0
    gpus: Annotated[int, Bounds(minimum=-1)] = -1
    gpus_per_slot: int = 0
    gpu_vendor: GpuVendor = "auto"
    bind_cpus: bool = False


@dataclass(frozen=True)
class ParallelSettings:
    """The coordinator-worker protocol.

    Attributes
    ----------
    batch_size
        Most ranges in one assignment; a busy worker with no request out reports as soon as it holds
        this many results (an idle worker reports at once, unless the answer to its request is due
        within a few ms: then its results go with its next message).
    report_interval_s
        Longest a finished range's result waits at a worker before it is sent.
    spin_s
        How long an idle loop polls without sleeping.
    max_sleep_s
        Longest sleep of an idle loop (the back-off ceiling).
    idle_hot_s
        For this long after the last progress an idle loop sleeps at most 1 ms (work is likely).
    yield_s
        While an answer is due (a worker waiting for work, rank 0 with work out), an idle loop polls
        this long with ``sched_yield`` before it sleeps, so a round trip costs no sleep.
    journal_flush_s
        Longest a journal record waits in memory on rank 0.
    fault_tolerance
        A dead worker rank: ``auto`` survives it when MPI can (ULFM: Open MPI started with
        ``--with-ft ulfm``), ``on`` tries even when that is not detected, ``off`` lets MPI end the job.
    """

    batch_size: AtLeastOne = 64
    report_interval_s: float = 0.5
    spin_s: float = 0.0002
    max_sleep_s: float = 0.02
    idle_hot_s: float = 0.1
    yield_s: float = 0.0
    journal_flush_s: float = 1.0
    fault_tolerance: Literal["auto", "on", "off"] = "auto"


@dataclass(frozen=True)
class PayloadSettings:
    """Running payload processes.

    Attributes
    ----------
    plain
        Payload plugin for jobs that are not event service.
    kill_grace_s
        Seconds between SIGTERM and SIGKILL when a payload's process group is stopped.
    timeout_s
        Wall-clock limit of one payload process (0: none).
    """

    plain: str = "plain"
    kill_grace_s: float = 10.0
    timeout_s: float = 0.0


@dataclass(frozen=True)
class BatchSettings:
    """The batch system: the allocation, its end, and submitting pilots.

    Attributes
    ----------
    system
        ``auto`` (the batch system whose job environment this is, else ``local``), or an
        ``hpcpilot.batch_systems`` plugin name (``slurm``, ``pbs``, ``lsf``, ``local``, ``saga``).
    walltime
        Overrides the allocation's end: the run ends this long after it started (``HH:MM:SS``,
        ``MM:SS``, ``90s``, ``45m``, ``2h`` or seconds; empty: the batch system's end time).
    exit_margin_s
        Seconds before the end by which the pilot has reported everything and exited: payloads
        still running then are killed (after ``payload.kill_grace_s``), and no work is handed out
        that is not expected to finish before it.
    warning_lead_s
        SIGUSR1 is the batch system's warning that the end is near (``#SBATCH --signal=B:USR1@300``,
        ``#BSUB -wa USR1``): the run then ends at most this many seconds later.
    term_grace_s
        After SIGTERM, SIGINT or SIGXCPU, seconds running payloads may still finish before they are
        killed (the batch system's hard kill usually follows SIGTERM within 30 s).
    queue, account
        Partition/queue and account/project of ``hpcpilot submit`` (empty: the site's default).
    template
        The batch-script template of ``hpcpilot submit``: a name in the package's ``launchers/`` or a
        path (empty: ``launchers/<system>.sh``).
    submit_options
        Extra options of the submit command (``sbatch``, ``qsub``, ``bsub``), split like a shell.
    saga_url
        The job service of the ``saga`` batch system (``slurm+ssh://login.example.org``).
    query_timeout_s
        Timeout of one batch-system command (``squeue``, ``qstat``, ``sbatch`` ...).
    """

    system: str = "auto"
    walltime: str = ""
    exit_margin_s: float = 60.0
    warning_lead_s: float = 300.0
    term_grace_s: float = 2.0
    queue: str = ""
    account: str = ""
    template: str = ""
    submit_options: str = ""
    saga_url: str = ""
    query_timeout_s: Timeout = 60.0


@dataclass(frozen=True)
class LaunchSettings:
    """How ``hpcpilot launch`` starts the ranks (one per node, GPU or core).

    Attributes
    ----------
    launcher
        An ``hpcpilot.launchers`` plugin (``srun``, ``mpiexec``, ``mpiexec-mpich``, ``mpiexec-pals``,
        ``aprun``, ``jsrun``, ``flux``), or ``auto``: the batch system's usual launcher.
    ranks_per
        ``node`` (the default: one rank per node, which runs a node's payloads), ``gpu`` or ``core``.
    options
        Extra launcher options, split like a shell (``--mpi=pmi2``).
    python
        The Python that runs hpcpilot on the compute nodes (empty: the one running ``launch``).
    """

    launcher: str = "auto"
    ranks_per: Literal["node", "gpu", "core"] = "node"
    options: str = ""
    python: str = ""


@dataclass(frozen=True)
class EnvironmentSettings:
    """The software environment of payloads: modules and containers.

    Attributes
    ----------
    chain
        ``hpcpilot.environments`` plugins, a list, outermost first: ``[modules, apptainer]``
        loads the modules and runs the container runtime inside them. ``plain``: the pilot's own
        environment.
    modules_use
        Module directories added to ``MODULEPATH`` (``module use``), a list.
    modules_load
        Modules loaded for every payload (``module load``), a list, in order; a name may
        hold the job's ``{swRelease}``, ``{cmtConfig}`` or ``{homepackage}`` (``atlas/{swRelease}``).
    modules_purge
        ``module purge`` before loading.
    module_cmd
        The module tool run as ``<cmd> python load ...``: empty for ``$LMOD_CMD``, then Lmod's
        ``/usr/share/lmod/lmod/libexec/lmod``, then Tcl's ``modulecmd``.
    image
        The container image of jobs that name none (``container_name``).
    job_image
        Whether a job's ``container_name`` chooses its image.
    binds
        Extra bind mounts ``SRC[:DST[:OPTS]]``, a list (the work directory and node scratch
        are always bound).
    cleanenv
        Start containers with a clean environment (only the payload's own variables go in).
    gpu
        Pass the node's GPUs into containers (``--nv``/``--rocm``/devices, by ``node.gpu_vendor``).
    executable
        The container runtime's executable (empty: the plugin's usual name on ``PATH``).
    options
        Extra options of the container runtime, split like a shell.
    """

    chain: Names = ("plain",)
    modules_use: Names = ()
    modules_load: Names = ()
    modules_purge: bool = False
    module_cmd: str = ""
    image: str = ""
    job_image: bool = True
    binds: Names = ()
    cleanenv: bool = True
    gpu: bool = False
    executable: str = ""
    options: str = ""


@dataclass(frozen=True)
class DataSettings:
    """Moving files: stage-in of inputs, stage-out of outputs and logs.

    URL templates may hold ``{lfn}``, ``{scope}``, ``{dataset}``, ``{panda_id}``, ``{endpoint}`` and
    ``{rucio_path}`` (Rucio's deterministic path ``scope/parts/xx/yy/lfn``). A plain path is a file on a
    shared filesystem.

    Attributes
    ----------
    stagein_tools
        ``hpcpilot.copytools`` plugins tried in order for inputs (a list): the first that can
        handle the source's scheme, then the next after it failed.
    stagein_source
        Where inputs are that are not in the job directory already (Harvester links them in): a URL
        template. Empty: inputs must be in the job directory.
    stageout_tools
        Copytools for outputs.
    stageout_destination
        Where outputs go: a URL template. Empty: outputs stay in the job directory (Harvester stages
        them out).
    stageout_overwrite
        Whether a stage-out to a file system (``cp``, ``mv``, ``symlink``) may replace a file that is
        already at the destination. Off: such a file is left alone and the stage-out fails (1137),
        unless it holds the same bytes (an earlier attempt of this job put it there).
    log_tools, log_destination
        The same for the log tarball (empty: as for outputs).
    retries
        Attempts of one file with one tool after the first.
    backoff_s, backoff_max_s
        First and longest pause between attempts (doubling).
    timeout_s
        Time limit of one file's transfer, plus ``timeout_per_gb_s`` for each GB of its size.
    timeout_per_gb_s
        Extra time per GB of the file.
    async_workers
        Transfers rank 0 runs at once in the background while dispatch goes on.
    scratch
        A node-local directory: a worker copies a job's inputs there before its payloads start, and
        payloads read them from there (empty: read from the job directory).
    """

    stagein_tools: Names = ("cp",)
    stagein_source: str = ""
    stageout_tools: Names = ("cp",)
    stageout_destination: str = ""
    stageout_overwrite: bool = False
    log_tools: Names = ()
    log_destination: str = ""
    retries: int = 2
    backoff_s: float = 2.0
    backoff_max_s: float = 60.0
    timeout_s: Timeout = 600.0
    timeout_per_gb_s: float = 300.0
    async_workers: AtLeastOne = 4
    scratch: str = ""


@dataclass(frozen=True)
class MonitorSettings:
    """Watching payloads and nodes: resource sampling, limits, and the ``monitor.h5`` time series.

    Attributes
    ----------
    plugins
        ``hpcpilot.monitors`` plugins every worker runs (a list; ``module:Class`` for one of
        your own). Empty: no sampling and no checks.
    period_s
        Seconds between two samples on a worker.
    pss
        Also measure PSS and swap (reads ``/proc/<pid>/smaps_rollup``, dearer than RSS).
    memory_limit_mb
        Memory limit of one payload in MB (its process tree's PSS, RSS without ``pss``). 0: the job's
        ``minRamCount``; no limit when that is missing too.
    memory_grace_s
        How long a payload may stay above its memory limit before it is killed (1235).
    looping_s
        A payload that modified no file of its job for this long is killed as looping (1150). 0: off.
    min_free_disk_mb
        A worker whose work directory (or scratch) has less free space pauses, and stops after
        ``disk.wait_s`` (1098); a payload that fails on such a disk failed for lack of space. 0: off
        (1 MB free still counts as full). A merge starts only if this much stays free after it
        (else its job fails with 1098).
    job_limits
        Kill a payload that runs longer than the job's ``maxWalltime`` (1213) or uses more CPU than its
        ``maxCpuCount`` (1204).
    write_interval_s
        Seconds between two appends of rank 0 to the time-series file.
    file
        The time-series file (HDF5), relative to the work directory.
    silent_worker_s
        Rank 0 warns about a worker it has not heard from for this long. 0: never.
    """

    plugins: Names = ("psutil",)
    period_s: Rate = 10.0
    pss: bool = True
    memory_limit_mb: int = 0
    memory_grace_s: float = 60.0
    looping_s: float = 1800.0
    min_free_disk_mb: int = 500
    job_limits: bool = True
    write_interval_s: Rate = 30.0
    file: str = "monitor.h5"
    silent_worker_s: float = 900.0


@dataclass(frozen=True)
class DiskSettings:
    """A full disk (ENOSPC, EDQUOT) in the work directory: how long to wait for space, what to keep.

    Attributes
    ----------
    wait_s
        How long the run waits for space to come back once the disk is full (nothing new is handed
        out meanwhile), never past the point where no work fits before the end of the allocation.
        Then it drains: jobs not done fail with 1098 and the run exits with code 4. A worker whose own
        disk stays too full this long stops (1098).
    retry_s
        First pause between two tries of the writes that failed (doubling, at most 10 s, or ``retry_s``
        when that is longer).
    reserve_mb
        Space rank 0 holds back in the work directory (``.hpcpilot-reserve``) and gives up on a full
        disk for its last records: journal, reports, ``summary.json``. 0: none.
    """

    wait_s: float = 120.0
    retry_s: Rate = 1.0
    reserve_mb: int = 16


@dataclass(frozen=True)
class ActSettings:
    """The ``act`` communicator: a job in an ARC session directory, put there by the ARC Control Tower.

    Attributes
    ----------
    session_dir
        The ARC job's session directory, which holds ``pandaJobData.out`` and receives
        ``heartbeat.json`` and ``output.list`` (empty: the work directory).
    output_url
        Where ARC uploads the job's outputs: the surl of an output is this URL followed by ``/<lfn>``,
        or with ``{lfn}``, ``{scope}`` and ``{PandaID}`` replaced where it names them. Required.
    log_url
        Likewise for the log tarball (empty: ``output_url``).
    ranges_file
        A range feed in the session directory, ``{"<PandaID>": [range, ...]}``, for an
        event-service job whose ranges come with it (empty: the pilot cuts the ranges from
        ``nEventsPerInputFile``).
    events_per_range
        Events per range when the pilot cuts them.
    heartbeat_s
        Seconds between two looks at the running job (its ``running`` state is written then).
    """

    session_dir: str = ""
    output_url: str = ""
    log_url: str = ""
    ranges_file: str = ""
    events_per_range: EventsPerRange = 10
    heartbeat_s: Rate = 60.0


@dataclass(frozen=True)
class Settings:
    """All settings, one section each."""

    run: RunSettings = field(default_factory=RunSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    harvester: HarvesterSettings = field(default_factory=HarvesterSettings)
    panda: PandaSettings = field(default_factory=PandaSettings)
    eventservice: EventServiceSettings = field(default_factory=EventServiceSettings)
    node: NodeSettings = field(default_factory=NodeSettings)
    parallel: ParallelSettings = field(default_factory=ParallelSettings)
    payload: PayloadSettings = field(default_factory=PayloadSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    launch: LaunchSettings = field(default_factory=LaunchSettings)
    environment: EnvironmentSettings = field(default_factory=EnvironmentSettings)
    data: DataSettings = field(default_factory=DataSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    disk: DiskSettings = field(default_factory=DiskSettings)
    act: ActSettings = field(default_factory=ActSettings)
