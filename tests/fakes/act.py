"""A fake ARC Control Tower and ARC CE: put a job into a session directory, then read what the pilot left.

What it does, and where the real code does it (ARCControlTower/aCT, ``src/act/atlas/``):

* `FakeAct.submit`: writes ``pandaJobData.out`` in the session directory with the job exactly as PanDA
  sent it (``aCTPanda2Xrsl.setInputs``: ``f.write(self.pandajob)``, the urlencoded ``getJob`` answer; or
  JSON when a test asks for it).
* `FakeAct.collect`: what happens after the batch job ends.

  1. ARC: a batch exit code other than 0 makes the ARC job ``donefailed``; aCT then does not read the
     pilot's ``heartbeat.json`` at all but sends its own failure, ``errorCode`` 9000 with ARC's error
     (``aCTATLASStatus.processFailed``): what the pilot wrote is lost.
  2. ARC uploads the dynamic outputs the job listed in ``@output.list`` (``aCTPanda2Xrsl.setOutputs``):
     one line ``<file> <url>`` per file, the URL with ARC options ``:checksumtype=...:checksumvalue=...``
     (Pilot 3's ``create_output_list``). Here ``file://`` URLs are copied; ARC fails the upload (and
     the job) when the checksum after the transfer differs, or the file is missing.
  3. aCT downloads ``heartbeat.json`` and its validator reads it through ``aCTPandaJob`` (``json.load``
     into attributes): ``extractOutputFilesFromMetadata`` parses ``xml`` (a JSON string) and takes
     ``fsize``, ``adler32`` and ``surl`` of every file (an error if one is missing); no files at all
     fails the job in aCT ("Cannot validate output") without forwarding the heartbeat.
     ``checkOutputFiles`` stats every surl and compares size and ``adler32:<value>`` with the storage.
  4. ``copyFinishedFiles``: ``startTime``/``endTime`` go through ``utcfromtimestamp`` (they must be
     epoch numbers) into ``%Y-%m-%d %H:%M:%S``; ``metaData`` through ``json.loads`` (Harvester-fed
     sites); the result is the update aCT sends to PanDA (`ActOutcome.update`).

Every breach is a line in `ActOutcome.violations`; tests assert there is none.
"""

from __future__ import annotations

import datetime
import json
import shutil
import urllib.parse
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: aCT's own error code for a pilot whose ARC job failed (``aCTATLASStatus.processFailed``).
ARC_FAILED_CODE = 9000


def adler32_of(path: Path) -> str:
    """The adler32 of a file as 8 lower-case hex digits."""
    value = 1
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


class ActPandaJob:
    """``aCTPandaJob``: every key of the heartbeat becomes an attribute (``setAttributes``)."""

    def __init__(self, jobinfo: dict[str, Any] | None = None, filename: Path | None = None) -> None:
        self.jobId: Any = None
        self.state: Any = None
        self.timeout = 60
        if jobinfo:
            self.__dict__.update(jobinfo)
        elif filename is not None:
            with filename.open() as f:
                self.__dict__.update(json.load(f))

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__[name] = value

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)

    def dictionary(self) -> dict[str, Any]:
        """Every attribute (what aCT writes for its PanDA update)."""
        return dict(self.__dict__)


@dataclass
class ActOutcome:
    """What aCT made of a finished ARC job.

    Attributes
    ----------
    arc_state
        ``done`` (batch exit code 0) or ``donefailed``.
    panda_status
        What aCT sets: ``finished`` (outputs validated), ``failed``, or ``toresubmit``.
    update
        The heartbeat aCT forwards to PanDA (None when it forwards none of the pilot's).
    uploaded
        The files ARC uploaded: surl -> stored path.
    violations
        Every breach found.
    """

    arc_state: str
    panda_status: str
    update: dict[str, Any] | None = None
    uploaded: dict[str, Path] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


class FakeAct:
    """aCT and the ARC CE for one session directory.

    Parameters
    ----------
    session_dir
        The ARC job's session directory.
    """

    def __init__(self, session_dir: Path) -> None:
        self.session_dir = session_dir

    def submit(self, job: dict[str, Any], fmt: str = "cgi") -> Path:
        """Write ``pandaJobData.out`` as aCT does: the job as PanDA's ``getJob`` sent it."""
        self.session_dir.mkdir(parents=True, exist_ok=True)
        path = self.session_dir / "pandaJobData.out"
        if fmt == "cgi":
            path.write_text(urllib.parse.urlencode({k: str(v) for k, v in job.items()}))
        else:
            path.write_text(json.dumps(job))
        return path

    def heartbeat(self) -> dict[str, Any]:
        """The raw ``heartbeat.json`` as it is now."""
        data: dict[str, Any] = json.loads((self.session_dir / "heartbeat.json").read_text())
        return data

    def collect(self, exit_code: int) -> ActOutcome:
        """What ARC and aCT do once the batch job ended with ``exit_code``."""
        if exit_code != 0:
            update = {"state": "failed", "errorCode": ARC_FAILED_CODE, "errorDiag": f"exit code {exit_code}"}
            return ActOutcome("donefailed", "failed", update)
        outcome = ActOutcome("done", "tovalidate")
        self._upload(outcome)
        if outcome.arc_state != "done":
            outcome.panda_status = "failed"
            return outcome
        self._validate(outcome)
        return outcome

    # --- ARC --------------------------------------------------------------------------------------

    def _upload(self, outcome: ActOutcome) -> None:
        listing = self.session_dir / "output.list"
        if not listing.exists():
            return
        for number, line in enumerate(listing.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            name, _, url = line.strip().partition(" ")
            url, options = _arc_options(url)
            source = self.session_dir / name
            if not url or name.startswith("/") or ".." in Path(name).parts:
                outcome.violations.append(
                    f"output.list line {number}: {line!r} is not '<relative file> <url>'"
                )
                continue
            if not source.is_file():
                outcome.violations.append(
                    f"output.list line {number}: {name} is not in the session directory"
                )
                outcome.arc_state = "donefailed"
                continue
            if options.get("checksumtype") != "adler32" or "checksumvalue" not in options:
                outcome.violations.append(
                    f"output.list line {number}: no adler32 checksum option in {line!r}"
                )
            target = _local(url)
            if target is None:
                outcome.violations.append(f"output.list line {number}: the fake uploads file:// URLs only")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            if options.get("checksumvalue") not in (None, adler32_of(target)):
                outcome.violations.append(f"{name}: ARC's checksum after upload differs from output.list")
                outcome.arc_state = "donefailed"
            outcome.uploaded[url] = target

    # --- aCT's validator --------------------------------------------------------------------------

    def _validate(self, outcome: ActOutcome) -> None:
        try:
            jobinfo = ActPandaJob(filename=self.session_dir / "heartbeat.json")
            outputfiles = json.loads(jobinfo.xml)
        except Exception as exc:  # the validator logs and fails the job alike
            outcome.violations.append(f"heartbeat.json: cannot extract the output files: {exc!r}")
            outcome.panda_status = "failed"
            return
        surls = []
        for lfn, attrs in outputfiles.items():
            try:
                surls.append(
                    (lfn, attrs["surl"], int(attrs["fsize"]), "adler32:" + (attrs["adler32"] or "00000001"))
                )
            except (KeyError, TypeError, ValueError) as exc:
                outcome.violations.append(f"xml[{lfn!r}]: {exc!r}")
        if not surls:
            outcome.panda_status = "failed"  # "Cannot validate output": the heartbeat is not forwarded
            return
        for lfn, surl, fsize, checksum in surls:
            stored = _local(surl)
            if stored is None or not stored.is_file():
                outcome.violations.append(f"{lfn}: nothing at {surl}")
                outcome.panda_status = "toresubmit"
                return
            if stored.stat().st_size != fsize or f"adler32:{adler32_of(stored)}" != checksum:
                outcome.violations.append(f"{lfn}: size or checksum at {surl} differs from heartbeat.json")
                outcome.panda_status = "toresubmit"
                return
        outcome.panda_status = "finished"
        outcome.update = self._copy_finished(jobinfo, outcome)

    def _copy_finished(self, jobinfo: ActPandaJob, outcome: ActOutcome) -> dict[str, Any]:
        if hasattr(jobinfo, "startTime") and hasattr(jobinfo, "endTime"):
            try:
                for key in ("startTime", "endTime"):
                    when = datetime.datetime.fromtimestamp(getattr(jobinfo, key), datetime.UTC)
                    setattr(jobinfo, key, when.strftime("%Y-%m-%d %H:%M:%S"))
            except (TypeError, ValueError, OverflowError) as exc:
                outcome.violations.append(f"startTime/endTime are not epoch seconds: {exc!r}")
        else:
            outcome.violations.append("heartbeat.json has no startTime/endTime: aCT takes ARC's")
        try:
            jobinfo.metaData = json.loads(jobinfo.metaData)
        except Exception as exc:  # aCT logs "no metaData in pilot metadata"
            outcome.violations.append(f"metaData is not a JSON string: {exc!r}")
        return jobinfo.dictionary()


def _arc_options(url: str) -> tuple[str, dict[str, str]]:
    """Split ARC URL options (``url:name=value:name=value``) off a URL."""
    options: dict[str, str] = {}
    while True:
        head, sep, tail = url.rpartition(":")
        if not sep or "=" not in tail or "/" in tail:
            return url, options
        name, _, value = tail.partition("=")
        options[name] = value
        url = head


def _local(url: str) -> Path | None:
    parsed = urllib.parse.urlparse(url)
    return Path(urllib.parse.unquote(parsed.path)) if parsed.scheme == "file" else None
