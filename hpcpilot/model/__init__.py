"""Pure domain model: jobs, files, event ranges, states and PanDA error codes. No I/O."""

from hpcpilot.model.errors import (
    CommunicatorError,
    ConfigError,
    ErrorCode,
    HpcPilotError,
    JobDefinitionError,
    PayloadError,
    PluginError,
    RangeDefinitionError,
)
from hpcpilot.model.job import Checksum, ChecksumAlgorithm, FileSpec, Job, parse_job
from hpcpilot.model.layout import WorkLayout
from hpcpilot.model.ranges import EventRange, RangeId, RangeState, parse_range
from hpcpilot.model.results import OutputFile, PayloadResult, RangeResult
from hpcpilot.model.states import JobState

__all__ = [
    "Checksum",
    "ChecksumAlgorithm",
    "CommunicatorError",
    "ConfigError",
    "ErrorCode",
    "EventRange",
    "FileSpec",
    "HpcPilotError",
    "Job",
    "JobDefinitionError",
    "JobState",
    "OutputFile",
    "PayloadError",
    "PayloadResult",
    "PluginError",
    "RangeDefinitionError",
    "RangeId",
    "RangeResult",
    "RangeState",
    "WorkLayout",
    "parse_job",
    "parse_range",
]
