r"""Naming rules of the job and range fields that become file names, paths or command arguments.

Nothing the server (or Harvester) sends is trusted: every field of a job or an event range that the
pilot places into a path, a file name, a URL or a payload's argv is checked here, where it enters the
pilot (`hpcpilot.model.job.parse_job`, `hpcpilot.model.ranges.parse_range`), and again where a
location is made from it (`hpcpilot.data.locations.location`), so that a `FileSpec` built by hand
(the Pilot API) meets the same rules.

Each rule is named after the system that defines such names and follows its published pattern:

* Rucio scopes and DID names: Rucio's JSON schema (``lib/rucio/common/schema/generic.py``, the same in
  the ATLAS policy): ``SCOPE`` ``^[a-zA-Z_\-.0-9]{1,25}$``, ``NAME``
  ``^[A-Za-z0-9][A-Za-z0-9\.\-\_]{1,250}$``, ``RSE`` ``^([A-Z0-9]+([_-][A-Z0-9]+)*)$``, ``UUID``
  (8-4-4-4-12 hex digits, the hyphens optional);
* PanDA's LFNs are Rucio file names; PanDA site and endpoint names have no published pattern;
* event range ids are PanDA's ``<taskID>-<PandaID>-<fileID>-<processID>-<attemptNr>`` or any id of
  the same characters.

Every rule is an allow-list, so none admits a ``/`` (except a PFN), a NUL, a newline, white space or a
shell metacharacter (``$`;&|<>()'"\*?[]{}~!#``), and none admits ``.`` or ``..`` as a name. Where
hpcpilot is stricter than the system's own pattern (a scope or a file name may not start with ``-``,
which a command would take for an option) the rule says so in ``source``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

#: characters that mean something to a shell (named in messages when a value holds one)
SHELL_METACHARACTERS = frozenset("$`;&|<>()'\"\\*?[]{}~!# \t")


@dataclass(frozen=True, slots=True)
class NamingRule:
    """One kind of name: its pattern, its longest length and where the rule comes from.

    Attributes
    ----------
    name
        What such a name is, for messages (``Rucio scope``).
    pattern
        The whole value must match it.
    max_length
        The longest value allowed.
    allowed
        The characters a value may hold, in words, for messages and the documentation.
    source
        The system that defines the rule and how hpcpilot follows it (for the documentation).
    path
        Whether the value is a path whose components are checked (no ``..`` component).
    """

    name: str
    pattern: re.Pattern[str]
    max_length: int
    allowed: str
    source: str
    path: bool = False

    def problem(self, value: str) -> str | None:
        """Why ``value`` is not such a name, or None when it is."""
        if not value:
            return "it is empty"
        if len(value) > self.max_length:
            return f"it is longer than {self.max_length} characters"
        for char in value:
            if char == "\0" or char in "\n\r" or char in SHELL_METACHARACTERS:
                return f"it holds {char!r}"
        if value in {".", ".."}:
            return "it is a relative directory name"
        if self.path and ".." in value.split("/"):
            return "it holds a '..' component"
        if "/" in value and not self.path:
            return "it holds '/'"
        if not self.pattern.fullmatch(value):
            return f"it must be {self.allowed}"
        return None

    def check(self, value: str, what: str = "") -> str:
        """Return ``value`` if it is such a name.

        Parameters
        ----------
        value
            The value to check.
        what
            What the value is (``scopeOut entry``), named in the message.

        Raises
        ------
        ValueError
            Naming the value, the rule and what is wrong.
        """
        problem = self.problem(value)
        if problem is not None:
            prefix = f"{what} " if what else ""
            raise ValueError(f"{prefix}{value!r} is not a {self.name}: {problem}")
        return value


_SCOPE = r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,24}"
_DID_NAME = r"[A-Za-z0-9][A-Za-z0-9._\-]{1,250}"

RUCIO_SCOPE = NamingRule(
    name="Rucio scope",
    pattern=re.compile(_SCOPE),
    max_length=25,
    allowed="1 to 25 letters, digits and '_.-', not starting with '.' or '-'",
    source="Rucio's SCOPE schema `^[a-zA-Z_\\-.0-9]{1,25}$`; hpcpilot also refuses a first `.` or `-`",
)
DATASET = NamingRule(
    name="Rucio dataset name",
    pattern=re.compile(rf"(?:{_SCOPE}:)?{_DID_NAME}"),
    max_length=25 + 1 + 251,
    allowed="a Rucio DID name (letters, digits and '._-', starting with a letter or digit), "
    "optionally after 'SCOPE:'",
    source="Rucio's NAME schema, optionally prefixed by a scope and `:` (Rucio's `scope:name` DID "
    "syntax, which PanDA uses in `realDatasetsIn`)",
)
RSE = NamingRule(
    name="storage endpoint (RSE) name",
    pattern=re.compile(r"[A-Za-z0-9]+(?:[_\-][A-Za-z0-9]+)*"),
    max_length=255,
    allowed="letters and digits in groups joined by single '_' or '-'",
    source="Rucio's RSE schema `^([A-Z0-9]+([_-][A-Z0-9]+)*)$`, letters of either case (Rucio's CMS "
    "policy has lower case, `T2_US_Nebraska`); PanDA's `ddmEndPoint` is an RSE",
)
GUID = NamingRule(
    name="GUID",
    pattern=re.compile(r"[0-9A-Fa-f]{8}(?:-?[0-9A-Fa-f]{4}){3}-?[0-9A-Fa-f]{12}"),
    max_length=36,
    allowed="a UUID: 8-4-4-4-12 hex digits (either case, hyphens optional)",
    source="Rucio's UUID schema (PanDA's GUIDs are UUIDs); braces around it are not taken",
)
FILE_NAME = NamingRule(
    name="plain file name",
    pattern=re.compile(r"[A-Za-z0-9._+:][A-Za-z0-9._+:,=@\-]*"),
    max_length=255,
    allowed="letters, digits and '._+:,=@-', not starting with '-'",
    source="PanDA's LFNs are Rucio DID names; hpcpilot also takes `+:,=@` (seen in user LFNs) and a "
    "first `_`, `.`, `+` or `:`, and refuses a first `-`; at most 255 characters (a file name's limit)",
)
PANDA_SITE = NamingRule(
    name="PanDA site or endpoint name",
    pattern=re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]*"),
    max_length=255,
    allowed="letters, digits and '_.:-', starting with a letter or digit",
    source="PanDA publishes no pattern: the characters of its site, queue and RSE names "
    "(`CERN-PROD_DATADISK`), and `:` for a prefix (`nucleus:CERN-PROD`)",
)
RANGE_ID = NamingRule(
    name="event range id",
    pattern=re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]*"),
    max_length=200,
    allowed="letters, digits and '._:-', starting with a letter or digit",
    source="PanDA's `<taskID>-<PandaID>-<fileID>-<processID>-<attemptNr>`, or any id of those "
    "characters (it becomes part of a file name)",
)
PFN = NamingRule(
    name="physical file name",
    pattern=re.compile(r"[A-Za-z0-9._+:,=@/][A-Za-z0-9._+:,=@/\-]*"),
    max_length=4096,
    allowed="a path or URL of letters, digits and '._+:,=@/-' with no '..' component, not starting with '-'",
    source="hpcpilot's own (neither PanDA nor Harvester publishes one): a path or URL of safe characters",
    path=True,
)

#: The rule of each job field (`parse_job`) whose value becomes a path, file name or argument.
JOB_FIELD_RULES: Mapping[str, NamingRule] = {
    "inFiles": FILE_NAME,
    "outFiles": FILE_NAME,
    "logFile": FILE_NAME,
    "GUID": GUID,
    "logGUID": GUID,
    "scopeIn": RUCIO_SCOPE,
    "scopeOut": RUCIO_SCOPE,
    "scopeLog": RUCIO_SCOPE,
    "realDatasetsIn": DATASET,
    "realDatasets": DATASET,
    "destinationDBlock": DATASET,
    "ddmEndPointIn": RSE,
    "ddmEndPointOut": RSE,
    "destinationSE": PANDA_SITE,
}

#: The rule of each event range field (`parse_range`); all but ``eventRangeID`` may be empty.
RANGE_FIELD_RULES: Mapping[str, NamingRule] = {
    "eventRangeID": RANGE_ID,
    "LFN": FILE_NAME,
    "GUID": GUID,
    "scope": RUCIO_SCOPE,
    "PFN": PFN,
}
