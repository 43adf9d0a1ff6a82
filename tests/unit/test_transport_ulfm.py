"""Rank 0's MPI end under ULFM: the news of a dead rank never costs a message a live rank sent.

MPI is stood in for by a fake ``mpi4py.MPI`` whose probe hands out what live ranks sent and then
fails with ``MPI_ERR_PROC_FAILED``, as Open MPI's ULFM does once it detects the death of a rank.
"""

from __future__ import annotations

import sys
import types
from collections import deque
from typing import Any

import pytest

from hpcpilot.parallel.messages import Farewell, Message, WorkerLost
from hpcpilot.parallel.transport import MpiCoordinatorTransport

ERR_PROC_FAILED = 75


class FakeMpiError(Exception):
    """``mpi4py.MPI.Exception`` with an error class."""

    def __init__(self, error_class: int) -> None:
        super().__init__(error_class)
        self.error_class = error_class

    def Get_error_class(self) -> int:  # noqa: N802 - mpi4py's name
        return self.error_class

    def Get_error_string(self) -> str:  # noqa: N802 - mpi4py's name
        return "MPI_ERR_PROC_FAILED: Process Failure"


class FakeStatus:
    source = -1

    def Get_source(self) -> int:  # noqa: N802 - mpi4py's name
        return self.source


class FakeGroup:
    def __init__(self, ranks: list[int]) -> None:
        self.ranks = ranks

    def Get_size(self) -> int:  # noqa: N802 - mpi4py's name
        return len(self.ranks)

    def Free(self) -> None:  # noqa: N802 - mpi4py's name
        pass

    @staticmethod
    def Translate_ranks(group: FakeGroup, ranks: list[int], world: FakeGroup) -> list[int]:  # noqa: N802
        return [group.ranks[r] for r in ranks]


class FakeMessage:
    def __init__(self, message: Message) -> None:
        self.message = message

    def recv(self) -> Message:
        return self.message


class FakeComm:
    """Three workers; ``arrivals`` are handed out in order, an ``int`` there is that rank dying."""

    def __init__(self, arrivals: list[tuple[int, Message] | int]) -> None:
        self.arrivals: deque[tuple[int, Message] | int] = deque(arrivals)
        self.dead: list[int] = []

    def Get_size(self) -> int:  # noqa: N802 - mpi4py's name
        return 4

    def Set_errhandler(self, handler: object) -> None:  # noqa: N802 - mpi4py's name
        pass

    def improbe(self, source: int, tag: int, status: FakeStatus) -> FakeMessage | None:
        if not self.arrivals:
            return None
        head = self.arrivals.popleft()
        if isinstance(head, int):
            self.dead.append(head)
            raise FakeMpiError(ERR_PROC_FAILED)
        status.source = head[0]
        return FakeMessage(head[1])

    def Ack_failed(self) -> None:  # noqa: N802 - mpi4py's name
        pass

    def Get_failed(self) -> FakeGroup:  # noqa: N802 - mpi4py's name
        return FakeGroup(list(self.dead))

    def Get_group(self) -> FakeGroup:  # noqa: N802 - mpi4py's name
        return FakeGroup([0, 1, 2, 3])


@pytest.fixture
def fake_mpi(monkeypatch: pytest.MonkeyPatch) -> None:
    mpi: Any = types.SimpleNamespace(
        ANY_SOURCE=-1,
        ANY_TAG=-1,
        ERRORS_RETURN=object(),
        ERR_PROC_FAILED=ERR_PROC_FAILED,
        ERR_PROC_FAILED_PENDING=ERR_PROC_FAILED + 1,
        Exception=FakeMpiError,
        Status=FakeStatus,
        Group=FakeGroup,
    )
    package = types.ModuleType("mpi4py")
    package.MPI = mpi  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mpi4py", package)


def test_a_message_received_before_a_death_is_detected_is_kept(fake_mpi: None) -> None:
    """Rank 3's message came in the same poll as the news of rank 2's death (a hang in the ULFM test)."""
    from_3, from_1 = Farewell(3), Farewell(1)  # any message: the transport does not look inside
    transport = MpiCoordinatorTransport(FakeComm([(3, from_3), 2, (1, from_1)]), fault_tolerant=True)
    first = transport.poll(10)
    assert [rank for rank, _ in first] == [2, 3]
    assert isinstance(first[0][1], WorkerLost) and first[1][1] is from_3
    assert transport.poll(10) == [(1, from_1)]
    assert transport.failed == {2}
    assert transport.counts.n_received == 2  # the made-up WorkerLost is not a received message
