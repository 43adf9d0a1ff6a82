"""Where a file is: URL templates filled from a job's file description.

A template (``data.stagein_source``, ``data.stageout_destination``, ``data.log_destination``) may hold

========================  ==============================================================
``{lfn}``                 the file's logical name
``{scope}``               its Rucio scope
``{dataset}``             its dataset
``{panda_id}``            the job's PandaID
``{endpoint}``            its storage endpoint (RSE, ``ddmEndPointIn``/``ddmEndPointOut``)
``{rucio_path}``          Rucio's deterministic path: ``SCOPE/xx/yy/LFN`` (see `rucio_path`)
========================  ==============================================================

A template that does not name the file (no ``{lfn}``, no ``{rucio_path}``) is a directory: ``/{lfn}`` is
appended, so that ``/outputs/{panda_id}`` puts each file of a job in the job's directory. Examples::

    /lustre/atlas/inputs                        -> /lustre/atlas/inputs/EVNT.01._000001.pool.root.1
    /lustre/atlas/outputs/{panda_id}            -> /lustre/atlas/outputs/4242/EVNT.01._000001.pool.root.1
    root://se.example.org:1094//atlas/rucio/{rucio_path}
                                                -> root://se.example.org:1094//atlas/rucio/mc23_13p6TeV/
                                                   69/45/EVNT.01._000001.pool.root.1
    rucio://{endpoint}/{scope}:{lfn}            -> rucio://CERN-PROD_DATADISK/mc23_13p6TeV:EVNT.01...

The values come from the job, which is not trusted: each is checked against its naming rule
(`hpcpilot.model.naming`: a plain file name, a Rucio scope, a dataset name, an RSE name) before it is
placed, whatever the template. A local template (a path or a ``file://`` URL) is also resolved: the
directory the file goes into (or comes from), symbolic links followed, must be the template's fixed
prefix (its text before the first placeholder, up to the last ``/``) or lie below it.
"""

from __future__ import annotations

import hashlib
import os
import string

from hpcpilot.data.copytools.base import local_path, scheme_of
from hpcpilot.model.errors import StagingError
from hpcpilot.model.job import FileSpec
from hpcpilot.model.naming import DATASET, FILE_NAME, RSE, RUCIO_SCOPE, NamingRule

#: the placeholders a template may use
PLACEHOLDERS = ("lfn", "scope", "dataset", "panda_id", "endpoint", "rucio_path")

#: the naming rule of each placeholder's value (``panda_id`` is a number; ``rucio_path`` is made of
#: the scope and the LFN, checked as such)
_RULES: dict[str, tuple[tuple[str, NamingRule], ...]] = {
    "lfn": (("lfn", FILE_NAME),),
    "scope": (("scope", RUCIO_SCOPE),),
    "dataset": (("dataset", DATASET),),
    "endpoint": (("endpoint", RSE),),
    "rucio_path": (("scope", RUCIO_SCOPE), ("lfn", FILE_NAME)),
}


def rucio_path(scope: str, name: str) -> str:
    """Rucio's deterministic path of a file: ``SCOPE/xx/yy/NAME``.

    ``xx`` and ``yy`` are the first two pairs of hex digits of ``md5("SCOPE:NAME")``; a scope that starts
    with ``user`` or ``group`` (``user.jdoe``) has its dots turned into slashes (``user/jdoe``). This is
    Rucio's ``hash`` LFN-to-path algorithm (``RSEDeterministicTranslation``), the one deterministic RSEs
    use.
    """
    digest = hashlib.md5(f"{scope}:{name}".encode(), usedforsecurity=False).hexdigest()
    if scope.startswith(("user", "group")):
        scope = scope.replace(".", "/")
    return f"{scope}/{digest[0:2]}/{digest[2:4]}/{name}"


def template_fields(template: str) -> list[str]:
    """The placeholder names used in ``template``, in order (``{{`` and ``}}`` are literal braces).

    Raises
    ------
    StagingError
        If the template is malformed or uses a placeholder that does not exist.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise StagingError(f"URL template {template!r} is malformed: {exc}") from None
    fields = [name for _, name, _, _ in parsed if name is not None]
    for name in fields:
        if name not in PLACEHOLDERS:
            raise StagingError(
                f"URL template {template!r} uses {{{name}}}; the placeholders are "
                + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
            )
    return fields


def location(template: str, spec: FileSpec, panda_id: int) -> str:
    """Fill ``template`` for one file of job ``panda_id`` (see the module's notes).

    Raises
    ------
    StagingError
        If the template uses a placeholder the file has no value for, or a value breaks its naming
        rule (the message names the field and the LFN); if a local location resolves outside the
        template's fixed prefix; or if the template uses an unknown placeholder.
    """
    fields = template_fields(template)
    prefix = fixed_prefix(template)
    if "lfn" not in fields and "rucio_path" not in fields:
        template = f"{template.rstrip('/')}/{{lfn}}"  # a directory per job, dataset, ...: the file in it
        fields.append("lfn")
    values: dict[str, str | None] = {
        "lfn": spec.lfn,
        "scope": spec.scope,
        "dataset": spec.dataset,
        "panda_id": str(panda_id),
        "endpoint": spec.ddm_endpoint,
        "rucio_path": rucio_path(spec.scope, spec.lfn) if spec.scope else None,
    }
    for name in fields:
        if not values[name]:
            needed = "scope" if name == "rucio_path" else name
            raise StagingError(
                f"URL template {template!r} needs the {needed} of {spec.lfn}, and the job gives none",
                context={"lfn": spec.lfn, "field": needed, "PandaID": panda_id},
            )
    for name in fields:
        for field, rule in _RULES.get(name, ()):
            value = values[field] or ""
            problem = rule.problem(value)
            if problem is not None:
                raise StagingError(
                    f"the {field} {value!r} of {spec.lfn!r} cannot be placed in a location: it is not a "
                    f"{rule.name}: {problem}",
                    context={"lfn": spec.lfn, "field": field, "PandaID": panda_id},
                )
    filled = template.format(**values)
    if scheme_of(filled) == "file":
        check_under(prefix, filled, fields, spec, panda_id)
    return filled


def fixed_prefix(template: str) -> str:
    """The directory part of ``template`` before its first placeholder (the whole template if none).

    ``/lustre/out/{scope}/{lfn}`` -> ``/lustre/out/``; ``/lustre/out{panda_id}`` -> ``/lustre/``;
    ``/lustre/out`` -> ``/lustre/out/``. Literal braces (``{{``) are the characters they stand for.
    """
    parsed = list(string.Formatter().parse(template))
    literal = ""
    for text, name, _, _ in parsed:
        literal += text
        if name is not None:
            return literal[: literal.rfind("/") + 1]
    return f"{literal.rstrip('/')}/"


def check_under(prefix: str, filled: str, fields: list[str], spec: FileSpec, panda_id: int) -> None:
    """Raise `StagingError` unless the directory of the local location ``filled`` lies under ``prefix``.

    Both are resolved (symbolic links followed, ``..`` removed) first. The file's own name is not
    followed: a link there is replaced by a copy, never written through.
    """
    root = os.path.realpath(local_path(prefix) or ".")
    directory = os.path.realpath(os.path.dirname(local_path(filled)) or ".")
    if os.path.commonpath([root, directory]) == root:
        return
    raise StagingError(
        f"the location {filled} of {spec.lfn!r} resolves to {directory}, outside {root} (the template's "
        "fixed part): a field or a symbolic link leads out of it",
        context={"lfn": spec.lfn, "field": ",".join(fields), "PandaID": panda_id},
    )
