"""Pieces every communicator needs: JSON objects keyed by PandaID, PandaIDs as keys, the batch id.

Pure functions (the batch id reads the mapping it is given); shared by the plugins of the family so
that none of them imports another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from hpcpilot.model.bounds import is_panda_id
from hpcpilot.model.errors import CommunicatorError

#: Variables that hold the batch system's id of this allocation, tried in this order.
BATCH_ID_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "COBALT_JOBID", "FLUX_JOB_ID")


def parse_json_object(text: str, *, source: str) -> dict[str, Any]:
    """Parse a JSON object keyed by PandaID (the shape of the job, range and report files).

    Raises
    ------
    CommunicatorError
        If the text is not JSON (say, half written) or not an object; names the file.
    """
    name = PurePath(source).name
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommunicatorError(
            f"{name} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            context={"source": source},
        ) from None
    if not isinstance(data, dict):
        raise CommunicatorError(
            f"{name} must hold a JSON object keyed by PandaID, got {type(data).__name__}",
            context={"source": source},
        )
    return data


def panda_id_or_none(key: str) -> int | None:
    """A PandaID given as a key (``"123"``), or None if it is not one PanDA could have given.

    An integer outside `hpcpilot.model.bounds.PANDA_ID` (``10**30``, a negative number) names no
    job: it is not reported, and never becomes a directory name.
    """
    try:
        number = int(key)
    except ValueError:
        return None
    return number if is_panda_id(number) else None


def batch_id(env: Mapping[str, str]) -> str:
    """The batch system's id of this allocation, if a known variable holds it ("" otherwise)."""
    return next((env[var] for var in BATCH_ID_VARS if env.get(var)), "")
