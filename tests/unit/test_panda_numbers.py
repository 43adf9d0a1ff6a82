"""The numbers PanDA reads, pinned against their sources with literal tables.

Every number here is copied by hand from the code that reads it (named above each table), never
computed from hpcpilot's own constants: a test that compares a constant with itself passes whatever
the constant says. When PanDA changes one of these numbers, change the table here with a note of the
source's commit, then the code.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from hpcpilot.comm.base import JobReport
from hpcpilot.comm.harvester_files import worker_attributes
from hpcpilot.comm.panda_api import Api, JobUpdate, update_job
from hpcpilot.model.bounds import JOB_METRICS_MAX
from hpcpilot.model.errors import ErrorCode, RangeDefinitionError
from hpcpilot.model.ranges import RangeId, parse_range
from hpcpilot.model.states import JobState
from hpcpilot.monitor.aggregate import job_metrics_string
from hpcpilot.payload import exitcodes
from hpcpilot.payload.exitcodes import error_for_exit, signal_code
from hpcpilot.runtime.signals import DRAIN_SIGNALS

DOCS = Path(__file__).resolve().parents[2] / "docs"

# --- PanDA pilot error codes --------------------------------------------------------------------

#: The constants of ``class ErrorCodes`` in PanDAWMS/pilot3 ``pilot/common/errorcodes.py`` (commit
#: 00da57ea84b8583de291681eb69acfa3e3069ba9), name -> number, as the PanDA server and monitor read
#: them. Copied by hand; a code hpcpilot does not use is listed so that a new ErrorCode member only
#: needs its line in OURS below.
PILOT3_ERROR_CODES: dict[str, int] = {
    "GENERALERROR": 1008,
    "NOLOCALSPACE": 1098,
    "STAGEINFAILED": 1099,
    "REPLICANOTFOUND": 1100,
    "NOSUCHFILE": 1103,
    "USERDIRTOOLARGE": 1104,
    "STDOUTTOOBIG": 1106,
    "SETUPFAILURE": 1110,
    "NFSSQLITE": 1115,
    "QUEUEDATA": 1116,
    "QUEUEDATANOTOK": 1117,
    "OUTPUTFILETOOLARGE": 1124,
    "NOSTORAGE": 1133,
    "STAGEOUTFAILED": 1137,
    "PUTMD5MISMATCH": 1141,
    "CHMODTRF": 1143,
    "PANDAKILL": 1144,
    "GETMD5MISMATCH": 1145,
    "TRFDOWNLOADFAILURE": 1149,
    "LOOPINGJOB": 1150,
    "STAGEINTIMEOUT": 1151,
    "STAGEOUTTIMEOUT": 1152,
    "NOPROXY": 1163,
    "MISSINGOUTPUTFILE": 1165,
    "SIZETOOLARGE": 1168,
    "GETADMISMATCH": 1171,
    "PUTADMISMATCH": 1172,
    "NOVOMSPROXY": 1177,
    "GETGLOBUSSYSERR": 1180,
    "PUTGLOBUSSYSERR": 1181,
    "NOSOFTWAREDIR": 1186,
    "NOPAYLOADMETADATA": 1187,
    "LFNTOOLONG": 1190,
    "ZEROFILESIZE": 1191,
    "MKDIR": 1199,
    "KILLSIGNAL": 1200,
    "SIGTERM": 1201,
    "SIGQUIT": 1202,
    "SIGSEGV": 1203,
    "SIGXCPU": 1204,
    "USERKILL": 1205,
    "SIGBUS": 1206,
    "SIGUSR1": 1207,
    "SIGINT": 1208,
    "MISSINGINSTALLATION": 1211,
    "PAYLOADOUTOFMEMORY": 1212,
    "REACHEDMAXTIME": 1213,
    "UNKNOWNPAYLOADFAILURE": 1220,
    "FILEEXISTS": 1221,
    "BADALLOC": 1223,
    "ESRECOVERABLE": 1224,
    "ESFATAL": 1228,
    "EXECUTEDCLONEJOB": 1234,
    "PAYLOADEXCEEDMAXMEM": 1235,
    "FAILEDBYSERVER": 1236,
    "ESNOEVENTS": 1238,
    "MESSAGEHANDLINGFAILURE": 1240,
    "CHKSUMNOTSUP": 1242,
    "NORELEASEFOUND": 1244,
    "NOUSERTARBALL": 1246,
    "BADXML": 1247,
    "NOTIMPLEMENTED": 1300,
    "UNKNOWNEXCEPTION": 1301,
    "CONVERSIONFAILURE": 1302,
    "FILEHANDLINGFAILURE": 1303,
    "PAYLOADEXECUTIONFAILURE": 1305,
    "SINGULARITYGENERALFAILURE": 1306,
    "PAYLOADEXECUTIONEXCEPTION": 1310,
    "NOTDEFINED": 1311,
    "NOSTORAGEPROTOCOL": 1313,
    "UNKNOWNCHECKSUMTYPE": 1314,
    "UNKNOWNTRFFAILURE": 1315,
    "RUCIOSERVICEUNAVAILABLE": 1316,
    "EXCEEDEDMAXWAITTIME": 1317,
    "COMMUNICATIONFAILURE": 1318,
    "INTERNALPILOTPROBLEM": 1319,
    "LOGFILECREATIONFAILURE": 1320,
    "UNKNOWNCOPYTOOL": 1323,
    "SERVICENOTAVAILABLE": 1324,
    "NOREPLICAS": 1326,
    "PAYLOADSIGSEGV": 1328,
    "MISSINGINPUTFILE": 1331,
    "NOREMOTESPACE": 1333,
    "JOBALREADYRUNNING": 1336,
    "BADQUEUECONFIGURATION": 1341,
    "NOOUTPUTINJOBREPORT": 1343,
    "EMPTYOUTPUTFILE": 1350,
    "COREDUMP": 1355,
    "PREPROCESSFAILURE": 1356,
    "POSTPROCESSFAILURE": 1357,
    "PANDAQUEUENOTACTIVE": 1359,
    "CHECKSUMCALCFAILURE": 1366,
    "COMMANDTIMEDOUT": 1367,
    "BADOUTPUTFILENAME": 1371,
    "LEASETIME": 1375,
    "LOGCREATIONTIMEOUT": 1376,
    "PREEMPTION": 1379,
    "STAGEOUTAUTHENTICATIONFAILURE": 1383,
    "NOJOBSINPANDA": 1385,
    "PANDAQUEUENOTONLINE": 1386,
}

#: Every member of hpcpilot's `ErrorCode` -> the pilot3 constant of the same meaning. A member
#: added to `ErrorCode` must be added here (the test below fails until it is).
OURS: dict[str, str] = {
    "GENERAL_ERROR": "GENERALERROR",
    "NO_LOCAL_SPACE": "NOLOCALSPACE",
    "STAGE_IN_FAILED": "STAGEINFAILED",
    "REPLICA_NOT_FOUND": "REPLICANOTFOUND",
    "NO_SUCH_FILE": "NOSUCHFILE",
    "SETUP_FAILURE": "SETUPFAILURE",
    "QUEUE_DATA": "QUEUEDATA",
    "STAGE_OUT_FAILED": "STAGEOUTFAILED",
    "KILLED_BY_PANDA": "PANDAKILL",
    "LOOPING_JOB": "LOOPINGJOB",
    "STAGE_IN_TIMEOUT": "STAGEINTIMEOUT",
    "STAGE_OUT_TIMEOUT": "STAGEOUTTIMEOUT",
    "NO_PROXY": "NOPROXY",
    "MISSING_OUTPUT_FILE": "MISSINGOUTPUTFILE",
    "STAGE_IN_CHECKSUM_MISMATCH": "GETADMISMATCH",
    "STAGE_OUT_CHECKSUM_MISMATCH": "PUTADMISMATCH",
    "NO_PAYLOAD_METADATA": "NOPAYLOADMETADATA",
    "KILL_SIGNAL": "KILLSIGNAL",
    "SIGTERM": "SIGTERM",
    "SIGQUIT": "SIGQUIT",
    "SIGSEGV": "SIGSEGV",
    "SIGXCPU": "SIGXCPU",
    "USER_KILL": "USERKILL",
    "SIGBUS": "SIGBUS",
    "SIGUSR1": "SIGUSR1",
    "SIGINT": "SIGINT",
    "PAYLOAD_OUT_OF_MEMORY": "PAYLOADOUTOFMEMORY",
    "REACHED_MAX_TIME": "REACHEDMAXTIME",
    "UNKNOWN_PAYLOAD_FAILURE": "UNKNOWNPAYLOADFAILURE",
    "ES_RECOVERABLE": "ESRECOVERABLE",
    "ES_FATAL": "ESFATAL",
    "PAYLOAD_EXCEEDED_MAX_MEMORY": "PAYLOADEXCEEDMAXMEM",
    "FAILED_BY_SERVER": "FAILEDBYSERVER",
    "ES_NO_EVENTS": "ESNOEVENTS",
    "MESSAGE_HANDLING_FAILURE": "MESSAGEHANDLINGFAILURE",
    "UNKNOWN_EXCEPTION": "UNKNOWNEXCEPTION",
    "PAYLOAD_EXECUTION_FAILURE": "PAYLOADEXECUTIONFAILURE",
    "COMMUNICATION_FAILURE": "COMMUNICATIONFAILURE",
    "LOG_FILE_CREATION_FAILURE": "LOGFILECREATIONFAILURE",
    "SERVICE_NOT_AVAILABLE": "SERVICENOTAVAILABLE",
    "CORE_DUMP": "COREDUMP",
    "LEASE_TIME": "LEASETIME",
    "PREEMPTION": "PREEMPTION",
    "NO_JOBS_IN_PANDA": "NOJOBSINPANDA",
}


def test_every_error_code_is_mapped_to_a_pilot3_code() -> None:
    # __members__ holds aliases too: a member changed to another member's number stays visible
    assert set(ErrorCode.__members__) == set(OURS)
    assert set(OURS.values()) <= set(PILOT3_ERROR_CODES)


@pytest.mark.parametrize(("ours", "theirs"), sorted(OURS.items()))
def test_error_code_is_pilot3s_number(ours: str, theirs: str) -> None:
    assert int(ErrorCode[ours]) == PILOT3_ERROR_CODES[theirs], f"{ours} is not pilot3's {theirs}"


def test_error_codes_are_distinct() -> None:
    numbers = [int(code) for code in ErrorCode.__members__.values()]
    assert len(numbers) == len(set(numbers))


def test_the_documented_error_table_is_the_code() -> None:
    rows = re.findall(r"^\| (\d{4}) \| `([A-Z_0-9]+)` \|", (DOCS / "errors.md").read_text(), re.MULTILINE)
    assert {name: int(number) for number, name in rows} == {
        name: PILOT3_ERROR_CODES[theirs] for name, theirs in OURS.items()
    }


# --- signals ------------------------------------------------------------------------------------

#: PanDAWMS/pilot3 ``pilot/common/errorcodes.py``, ``ErrorCodes.get_kill_signal_error_code``: the
#: complete signal -> code map; every other signal is KILLSIGNAL.
PILOT3_SIGNAL_CODES: dict[str, int] = {
    "SIGTERM": 1201,
    "SIGQUIT": 1202,
    "SIGSEGV": 1203,
    "SIGXCPU": 1204,
    "SIGUSR1": 1207,
    "SIGBUS": 1206,
    "SIGINT": 1208,
}
PILOT3_KILL_SIGNAL = 1200

ALL_SIGNALS = range(1, signal.NSIG)


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def test_the_signal_map_is_pilot3s_map() -> None:
    mapped = {_name(signum): int(code) for signum, code in exitcodes._SIGNAL_CODES.items()}
    assert mapped == PILOT3_SIGNAL_CODES  # no entry missing, none added, none changed


@pytest.mark.parametrize("signum", ALL_SIGNALS, ids=_name)
def test_every_signal_has_pilot3s_code(signum: int) -> None:
    expected = PILOT3_SIGNAL_CODES.get(_name(signum), PILOT3_KILL_SIGNAL)
    assert int(signal_code(signum)) == expected
    assert int(error_for_exit(-signum)[0] or 0) == expected  # killed, as subprocess reports it
    if signum <= 64:
        assert int(error_for_exit(128 + signum)[0] or 0) == expected  # a shell's 128 + n


def test_the_pilot_drains_on_the_batch_systems_ending_signals() -> None:
    # hpcpilot's own choice (docs/resilience.md): the signals a batch system sends before the end
    assert {signal.Signals(s).name for s in DRAIN_SIGNALS} == {"SIGTERM", "SIGUSR1", "SIGINT", "SIGXCPU"}
    # ... and the jobs it leaves unfinished fail with pilot3's code of that signal
    assert {int(signal_code(s)) for s in DRAIN_SIGNALS} == {1201, 1207, 1208, 1204}


# --- jobMetrics -----------------------------------------------------------------------------------

#: The longest ``jobMetrics`` PanDA keeps: PanDAWMS/panda-server ``pandaserver/api/v1/pilot_api.py``
#: ``update_job`` stores ``str(job_metrics)[:500]`` (the legacy ``updateJob`` the same); the column
#: is ``JOBMETRICS VARCHAR2(500 BYTE)`` (PanDAWMS/panda-database ``schema/oracle/ATLAS_PANDA.sql``);
#: pilot3 cuts its string to 500 at a whole word (``pilot/user/atlas/jobmetrics.py``,
#: ``get_job_metrics``). Bytes, not characters.
PANDA_JOB_METRICS_MAX = 500

MANY = {f"user_metric_{i:03d}": 1234567.0 + i for i in range(200)}  # about 5000 characters


def test_job_metrics_limit_is_pandas() -> None:
    assert JOB_METRICS_MAX == PANDA_JOB_METRICS_MAX


def test_job_metrics_string_fits_panda_and_is_cut_at_a_whole_word() -> None:
    text = job_metrics_string(MANY)
    assert PANDA_JOB_METRICS_MAX - 30 < len(text.encode()) <= PANDA_JOB_METRICS_MAX
    words = text.split(" ")
    assert all(re.fullmatch(r"user_metric_\d{3}=\d+", w) for w in words)  # none cut in half
    assert words == [f"user_metric_{i:03d}={1234567 + i}" for i in range(len(words))]


def _report() -> JobReport:
    return JobReport(
        panda_id=1001,
        state=JobState.FINISHED,
        ranges={"total": 123456, "finished": 123000, "fatal": 456, "failed_attempts": 7890},
        job_metrics=job_metrics_string(MANY),
    )


def test_job_metrics_sent_to_harvester_fit_panda() -> None:
    # Harvester passes jobMetrics on to PanDA, which keeps 500 bytes: the range counts must not push
    # the user metrics beyond it (a word cut by PanDA would be read as a wrong value)
    sent = worker_attributes(_report(), None, "")["jobMetrics"]
    assert len(sent.encode()) <= PANDA_JOB_METRICS_MAX
    assert "finished=123000" in sent.split(" ")
    assert set(sent.split(" ")) <= {f"{k}={v}" for k, v in _report().ranges.items()} | set(
        _report().job_metrics.split(" ")
    )


@pytest.mark.parametrize("api", [Api.V1, Api.LEGACY])
def test_job_metrics_sent_to_panda_fit(api: Api) -> None:
    update = JobUpdate(panda_id=1001, state=JobState.FINISHED, job_metrics=_report().job_metrics)
    params = dict(update_job(api, update).params)
    sent = str(params["job_metrics" if api is Api.V1 else "jobMetrics"])
    assert 0 < len(sent.encode()) <= PANDA_JOB_METRICS_MAX


def _short(text: str) -> str:
    return repr(text)[:40]


# --- event range ids ----------------------------------------------------------------------------

#: Range ids as PanDA makes them: ``f"{jediTaskID}-{pandaID}-{fileID}-{job_processID}-{attemptNr}"``
#: (PanDAWMS/panda-server ``pandaserver/taskbuffer/db_proxy_mods/task_event_module.py``,
#: ``makeEventRangeID``): five decimal numbers, written without leading zeros.
WELL_FORMED = [
    "1-2-3-4-5",
    "0-1-0-0-0",
    "42-1001-1-1-1",
    "41000123-6543210987-17-3-1",
    "38420781-6232841523-29517342651-1234-3",
    "99999999999-99999999999-99999999999-9999999999-999",
]

#: Not five numbers: refused by `RangeId.parse` (and so never taken apart into wrong numbers).
NOT_FIVE_NUMBERS = [
    "1-2-3-45",  # four numbers
    "1-2-3-4",
    "1-2-3-4-5-6",
    "12345",
    "1-2-3-4-",
    "-1-2-3-4-5",
    "1--2-3-4-5",
    "1-2-3-4-5-",
    "1-2-3-4-x",
    "a-2-3-4-5",
    "1-2-3-4-5.0",
    "1_2_3_4_5",
    "1.2.3.4.5",
    " 1-2-3-4-5",
    "1-2-3-4-5 ",
    "1-2-3-4-5\n",
    "+1-2-3-4-5",
    "01-2-3-4-5",  # PanDA writes no leading zero: it would not round-trip
    "1-2-3-4-05",
    "\u0661-2-3-4-5",  # an ARABIC-INDIC DIGIT ONE: a digit to `\d`, not to PanDA
    "1-2-3-4-\uff15",  # a FULLWIDTH DIGIT FIVE
    "1-2-3-4-" + "9" * 5000,  # beyond int()'s digit limit: refused, not a ValueError
    "",
    "Range-1",
]

#: Refused where a range enters the pilot (`parse_range`: the id becomes part of a file name and
#: of payload arguments), whatever its structure.
UNSAFE = [
    "",
    ".",
    "..",
    "../1-2-3-4-5",
    "1-2-3-4-5/..",
    "a/b",
    "/1-2-3-4-5",
    "1-2-3-4-5\0",
    "1-2-3-4-5\n",
    "1-2-3-4-5\r",
    "-1-2-3-4-5",  # would be read as an option
    "1-2-3-4-5 x",
    "1-2-3-4-5;rm",
    "$(id)-2-3-4-5",
    "1-2-3-4-5*",
    "1-2-3-4-\u0665",
    "1" * 201,  # longer than any file name part it may become
]


@pytest.mark.parametrize("text", WELL_FORMED)
def test_pandas_range_ids_are_taken_apart_and_round_trip(text: str) -> None:
    rid = RangeId.parse(text)
    assert str(rid) == text
    assert [rid.task_id, rid.panda_id, rid.file_id, rid.process_id, rid.attempt_nr] == [
        int(n) for n in text.split("-")
    ]
    assert parse_range({"eventRangeID": text, "startEvent": 1, "lastEvent": 1}, source="t").range_id == text


@pytest.mark.parametrize("text", NOT_FIVE_NUMBERS, ids=_short)
def test_range_ids_that_are_not_five_numbers_are_refused(text: str) -> None:
    with pytest.raises(RangeDefinitionError, match="is not <taskID>"):
        RangeId.parse(text)


@pytest.mark.parametrize("text", UNSAFE, ids=_short)
def test_unsafe_range_ids_are_refused_where_they_enter(text: str) -> None:
    with pytest.raises(RangeDefinitionError, match="unsafe 'eventRangeID'"):
        parse_range({"eventRangeID": text, "startEvent": 1, "lastEvent": 1}, source="t")
