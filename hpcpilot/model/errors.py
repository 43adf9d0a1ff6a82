"""PanDA pilot error codes and the hpcpilot exception tree.

The numbers are the PanDA pilot's own (the server and the monitor depend on them). Exceptions carry an
`ErrorCode`, a context dict and whether retrying can help; they are turned into
``pilotErrorCode``/``pilotErrorDiag`` only where a report leaves the program.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class ErrorCode(enum.IntEnum):
    """PanDA pilot error codes (PROTOCOLS.md section 4)."""

    GENERAL_ERROR = 1008
    NO_LOCAL_SPACE = 1098
    STAGE_IN_FAILED = 1099
    REPLICA_NOT_FOUND = 1100
    NO_SUCH_FILE = 1103
    SETUP_FAILURE = 1110
    QUEUE_DATA = 1116
    STAGE_OUT_FAILED = 1137
    KILLED_BY_PANDA = 1144
    LOOPING_JOB = 1150
    STAGE_IN_TIMEOUT = 1151
    STAGE_OUT_TIMEOUT = 1152
    NO_PROXY = 1163
    MISSING_OUTPUT_FILE = 1165
    STAGE_IN_CHECKSUM_MISMATCH = 1171
    STAGE_OUT_CHECKSUM_MISMATCH = 1172
    NO_PAYLOAD_METADATA = 1187
    KILL_SIGNAL = 1200
    SIGTERM = 1201
    SIGQUIT = 1202
    SIGSEGV = 1203
    SIGXCPU = 1204
    USER_KILL = 1205
    SIGBUS = 1206
    SIGUSR1 = 1207
    SIGINT = 1208
    PAYLOAD_OUT_OF_MEMORY = 1212
    REACHED_MAX_TIME = 1213
    UNKNOWN_PAYLOAD_FAILURE = 1220
    ES_RECOVERABLE = 1224
    ES_FATAL = 1228
    PAYLOAD_EXCEEDED_MAX_MEMORY = 1235
    FAILED_BY_SERVER = 1236
    ES_NO_EVENTS = 1238
    MESSAGE_HANDLING_FAILURE = 1240
    UNKNOWN_EXCEPTION = 1301
    PAYLOAD_EXECUTION_FAILURE = 1305
    COMMUNICATION_FAILURE = 1318
    LOG_FILE_CREATION_FAILURE = 1320
    SERVICE_NOT_AVAILABLE = 1324
    CORE_DUMP = 1355
    LEASE_TIME = 1375
    PREEMPTION = 1379
    NO_JOBS_IN_PANDA = 1385


class ExitCode(enum.IntEnum):
    """Exit codes of ``hpcpilot run`` and ``hpcpilot demo`` (and of every rank's process)."""

    OK = 0  #: every job finished (or the command succeeded)
    ERROR = 1  #: an unexpected error; the MPI job was aborted
    CONFIG = 2  #: bad configuration, unusable work directory, or no jobs could be read
    JOBS_FAILED = 3  #: the run ended normally but some job failed or was cut short
    DISK_FULL = 4  #: the run ended on a full disk (1098): free space, then ``run --resume``


class HpcPilotError(Exception):
    """Root of every error hpcpilot raises on purpose.

    Parameters
    ----------
    message
        What went wrong, for a person.
    code
        The PanDA pilot error code a job failed by this error reports.
    retryable
        Whether trying the same thing again can help.
    context
        Facts that locate the error: file, field, command, exit code, stderr tail, rank, host, ...
    """

    default_code: ErrorCode = ErrorCode.GENERAL_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        retryable: bool = False,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code if code is not None else self.default_code
        self.retryable = retryable
        self.context: dict[str, Any] = dict(context or {})

    def __str__(self) -> str:
        if not self.context:
            return self.message
        where = ", ".join(f"{k}={v}" for k, v in self.context.items())
        return f"{self.message} ({where})"


class ConfigError(HpcPilotError):
    """A configuration file, variable or option is invalid; names the source and the key."""

    default_code = ErrorCode.QUEUE_DATA


class PluginError(HpcPilotError):
    """A plugin could not be found, loaded, or is not of its family's base class."""

    default_code = ErrorCode.SETUP_FAILURE


class JobDefinitionError(HpcPilotError):
    """A job dict is malformed: the message names the job, the field and the source."""

    default_code = ErrorCode.GENERAL_ERROR


class RangeDefinitionError(HpcPilotError):
    """An event range is malformed: the message names the range, the field and the source."""

    default_code = ErrorCode.MESSAGE_HANDLING_FAILURE


class CommunicatorError(HpcPilotError):
    """The workload manager could not be reached or answered nonsense."""

    default_code = ErrorCode.COMMUNICATION_FAILURE


class BatchSystemError(HpcPilotError):
    """The batch system could not be queried or driven."""

    default_code = ErrorCode.GENERAL_ERROR


class StagingError(HpcPilotError):
    """Moving a file in or out failed."""

    default_code = ErrorCode.STAGE_IN_FAILED


class DiskFullError(HpcPilotError):
    """A write failed because the disk is full or the quota used up (ENOSPC, EDQUOT): wait, retry."""

    default_code = ErrorCode.NO_LOCAL_SPACE


class EnvironmentSetupError(HpcPilotError):
    """A payload's environment cannot be made: a missing module, image or runtime; a bad job field."""

    default_code = ErrorCode.SETUP_FAILURE


class PayloadError(HpcPilotError):
    """A payload could not be started or failed."""

    default_code = ErrorCode.PAYLOAD_EXECUTION_FAILURE
