"""The environment family: a plugin wraps a payload's `Command` into the one that runs it.

``modules`` changes the command's environment (``module use``/``purge``/``load``, computed once per
node); a container runtime (``apptainer``, ``singularity``, ``charliecloud``, ``shifter``, ``podman``,
``podman-hpc``) puts its own argv in front; ``plain`` leaves it alone. Plugins register under the
``hpcpilot.environments`` entry-point group and compose in the order of ``environment.chain``,
outermost first (`EnvironmentChain`).
"""

from __future__ import annotations

import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from hpcpilot.config.schema import EnvironmentSettings, NodeSettings
from hpcpilot.model.command import Command
from hpcpilot.model.errors import ConfigError, EnvironmentSetupError
from hpcpilot.model.job import Job
from hpcpilot.runtime.commands import EnvCommandRunner, run_command

#: What a container image name may look like: a path or a registry reference, never shell syntax.
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+=-]*$|^/[A-Za-z0-9._/:@+=-]*$")
#: What a module name may look like (``gcc/12.2.0``, ``cray-python``, ``PrgEnv-gnu``).
_MODULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]*$")


@dataclass(frozen=True, slots=True)
class EnvironmentRequest:
    """What the payloads of one job need from their environment.

    Attributes
    ----------
    image
        The container image ("" for none): the job's ``container_name`` or ``environment.image``.
    modules
        The modules to load, in order.
    binds
        Host directories the payload must see at the same path (work directory, node scratch).
    gpu_vendor
        ``nvidia``, ``amd`` or ``intel`` when the node's GPUs go into containers, else "".
    """

    image: str = ""
    modules: tuple[str, ...] = ()
    binds: tuple[str, ...] = ()
    gpu_vendor: str = ""


class Environment(ABC):
    """Base class of environment plugins.

    Parameters
    ----------
    settings
        The ``environment`` settings.
    runner
        Runs short helper commands (the module tool, an image check); injected for tests.
    """

    #: The executable of the runtime when ``environment.executable`` is empty ("" for none).
    executable: ClassVar[str] = ""
    #: Whether the plugin needs an image (a container runtime).
    needs_image: ClassVar[bool] = False

    def __init__(self, settings: EnvironmentSettings, runner: EnvCommandRunner = run_command) -> None:
        self.settings = settings
        self.runner = runner

    @property
    def program(self) -> str:
        """The runtime's executable: ``environment.executable`` or the plugin's usual name."""
        return self.settings.executable or self.executable

    @property
    def extra_options(self) -> tuple[str, ...]:
        """``environment.options`` split like a shell."""
        return tuple(shlex.split(self.settings.options))

    def prepare(self, request: EnvironmentRequest, base_env: Mapping[str, str]) -> None:
        """Do the work that is done once per node and request (compute module changes, check an image).

        Raises
        ------
        EnvironmentSetupError
            If the environment cannot be made (a missing module, image or runtime): the job fails with
            code 1110 and the message names what is missing.
        """
        if self.needs_image and not request.image:
            raise EnvironmentSetupError(
                f"the {type(self).__name__} environment needs a container image: the job names none "
                "(container_name) and environment.image is empty"
            )

    @abstractmethod
    def wrap(self, command: Command, request: EnvironmentRequest) -> Command:
        """The command that runs ``command`` in this environment (pure: no I/O)."""


class EnvironmentChain:
    """Environments composed in the order of ``environment.chain``, outermost first.

    ``modules,apptainer`` runs ``apptainer exec IMAGE payload`` with the modules' environment: the
    innermost plugin wraps the payload first, each outer one wraps the result.

    Parameters
    ----------
    environments
        The plugins, outermost first.
    """

    def __init__(self, environments: Sequence[Environment]) -> None:
        self.environments = tuple(environments)

    def prepare(self, request: EnvironmentRequest, base_env: Mapping[str, str]) -> None:
        """Prepare every plugin, outermost first (see `Environment.prepare`).

        Each inner plugin is prepared in the environment the outer ones make: with ``modules,apptainer``
        the check that ``apptainer`` is installed looks at the ``PATH`` the modules set.
        """
        env = dict(base_env)
        for environment in self.environments:
            environment.prepare(request, env)
            env = dict(environment.wrap(Command(("true",), env), request).env)

    def wrap(self, command: Command, request: EnvironmentRequest) -> Command:
        """Wrap ``command`` by every plugin, innermost first."""
        for environment in reversed(self.environments):
            command = environment.wrap(command, request)
        return command


def make_chain(settings: EnvironmentSettings, runner: EnvCommandRunner = run_command) -> EnvironmentChain:
    """Load the plugins of ``environment.chain`` and compose them.

    Raises
    ------
    ConfigError
        If the chain is empty.
    PluginError
        If a plugin is not installed or does not load.
    """
    from hpcpilot.plugins import load_plugin

    names = settings.chain
    if not names:
        raise ConfigError("environment.chain names no environment (use 'plain')")
    return EnvironmentChain([load_plugin("environments", n, Environment)(settings, runner) for n in names])


def check_image(name: str, *, source: str) -> str:
    """Return ``name`` if it is a plausible image name or path, else raise naming ``source``.

    An image name may not contain spaces, quotes, ``..`` path parts or shell syntax.
    """
    if not _IMAGE.fullmatch(name) or ".." in name.split("/"):
        raise EnvironmentSetupError(
            f"container image {name!r} is not a valid image name", context={"field": source}
        )
    return name


def check_module(name: str, *, source: str) -> str:
    """Return ``name`` if it is a plausible module name, else raise naming ``source``."""
    if not _MODULE.fullmatch(name) or ".." in name.split("/"):
        raise EnvironmentSetupError(f"module {name!r} is not a valid module name", context={"field": source})
    return name


def request_for(
    job: Job, settings: EnvironmentSettings, node: NodeSettings, binds: Sequence[str]
) -> EnvironmentRequest:
    """The environment one job's payloads need, from the job's fields and the settings.

    Parameters
    ----------
    job
        The job (``container_name`` chooses the image when ``environment.job_image`` is on).
    settings, node
        The ``environment`` and ``node`` settings.
    binds
        Host directories payloads must see (the work directory, node scratch).

    Raises
    ------
    EnvironmentSetupError
        If the job's ``container_name`` or a module name is not valid, or a module names a job field
        the job leaves empty (code 1110, naming the field).
    """
    image = settings.image
    if settings.job_image and job.container_name:
        image = check_image(job.container_name, source="container_name")
    elif image:
        check_image(image, source="environment.image")
    modules = tuple(
        check_module(_with_job_fields(m, job), source="environment.modules_load")
        for m in settings.modules_load
    )
    binds = tuple(dict.fromkeys([*binds, *settings.binds]))
    return EnvironmentRequest(image, modules, binds, node.gpu_vendor if settings.gpu else "")


#: Job fields a module name in ``environment.modules_load`` may hold: ``atlas/{swRelease}``.
MODULE_FIELDS = {"swRelease": "sw_release", "cmtConfig": "cmt_config", "homepackage": "home_package"}


def _with_job_fields(name: str, job: Job) -> str:
    """``name`` with ``{swRelease}``, ``{cmtConfig}`` and ``{homepackage}`` filled from the job."""
    for field, attr in MODULE_FIELDS.items():
        placeholder = "{" + field + "}"
        if placeholder in name:
            value = getattr(job, attr)
            if not value:
                raise EnvironmentSetupError(
                    f"module {name!r} needs the job's {field}, which the job leaves empty",
                    context={"field": field, "PandaID": job.panda_id},
                )
            name = name.replace(placeholder, value)
    return name
