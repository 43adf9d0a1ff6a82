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
"""

from __future__ import annotations

import hashlib
import string

from hpcpilot.model.errors import StagingError
from hpcpilot.model.job import FileSpec

#: the placeholders a template may use
PLACEHOLDERS = ("lfn", "scope", "dataset", "panda_id", "endpoint", "rucio_path")


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
        If the template uses a placeholder the file has no value for (the message names the field and
        the LFN), or an unknown placeholder.
    """
    fields = template_fields(template)
    if not fields:
        return f"{template.rstrip('/')}/{spec.lfn}"
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
    return template.format(**values)
