"""Choosing the batch system: by name, or ``auto`` (the one whose job environment this is)."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from hpcpilot.batch.base import BatchSystem
from hpcpilot.config.schema import BatchSettings
from hpcpilot.model.allocation import Allocation
from hpcpilot.plugins import load_plugin
from hpcpilot.runtime.commands import CommandRunner, run_command

__all__ = ["AUTO_ORDER", "batch_system_class", "discover_allocation", "make_batch_system"]

AUTO_ORDER = ("slurm", "pbs", "lsf")
"""The plugins ``auto`` asks, in order, before falling back to ``local``."""


def batch_system_class(name: str, env: Mapping[str, str]) -> type[BatchSystem]:
    """The batch-system plugin class called ``name``.

    Parameters
    ----------
    name
        ``auto``: the first of slurm, pbs, lsf whose ``in_allocation(env)`` is true, else ``local``;
        otherwise an ``hpcpilot.batch_systems`` entry-point name or ``package.module:Class``.
    env
        The environment to recognise a batch job by.

    Raises
    ------
    PluginError
        No such plugin, it does not load, or it is not a `BatchSystem`.
    """
    if name.strip().lower() != "auto":
        return load_plugin("batch_systems", name.strip(), BatchSystem)
    for candidate in AUTO_ORDER:
        cls = load_plugin("batch_systems", candidate, BatchSystem)
        if cls.in_allocation(env):
            return cls
    return load_plugin("batch_systems", "local", BatchSystem)


def make_batch_system(
    batch: BatchSettings, env: Mapping[str, str], run: CommandRunner | None = None
) -> BatchSystem:
    """The plugin chosen by ``batch.system``, built with ``run`` and ``env``.

    ``run`` defaults to `run_command` with the timeout ``batch.query_timeout_s``. The ``saga`` plugin
    also gets ``batch.saga_url``, ``batch.queue`` and ``batch.account``.

    Raises
    ------
    PluginError
        The plugin cannot be loaded.
    """
    cls = batch_system_class(batch.system, env)
    if run is None:
        run = functools.partial(run_command, timeout_s=batch.query_timeout_s)
    if cls.name == "saga":
        saga: type = cls
        built: BatchSystem = saga(run, env, url=batch.saga_url, queue=batch.queue, account=batch.account)
        return built
    return cls(run, env)


def discover_allocation(
    batch: BatchSettings, env: Mapping[str, str], run: CommandRunner | None = None
) -> Allocation:
    """The allocation as the chosen batch system sees it (``batch.walltime`` is not applied here).

    ``run`` as for `make_batch_system`.

    Raises
    ------
    PluginError
        The plugin cannot be loaded.
    BatchSystemError
        Discovery failed.
    """
    return make_batch_system(batch, env, run).discover()
