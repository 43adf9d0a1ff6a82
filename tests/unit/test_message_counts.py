"""The transport counts every message it sends and receives, by type; the summary reads it there."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

from hpcpilot.config.schema import EventServiceSettings, NodeSettings, Settings
from hpcpilot.model.layout import WorkLayout
from hpcpilot.parallel import run as par
from hpcpilot.parallel.coordinator import Coordinator
from hpcpilot.parallel.messages import Message, Stop, WorkerUpdate
from hpcpilot.parallel.transport import LocalLink, MessageCounts
from hpcpilot.runtime.journal import Journal
from hpcpilot.runtime.signals import SignalFlag
from tests.unit.test_coordinator_commands import N_RANGES, Scripted


class Recording:
    """The coordinator's end of a local link that writes down every message that passes it."""

    worker_ranks: tuple[int, ...] = (0,)

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.counts: MessageCounts = inner.counts  # type: ignore[attr-defined]
        self.sent: list[str] = []
        self.received: list[str] = []

    def poll(self, limit: int) -> list[tuple[int, Message]]:
        out: list[tuple[int, Message]] = self.inner.poll(limit)  # type: ignore[attr-defined]
        self.received += [type(m).__name__ for _, m in out]
        return out

    def send(self, rank: int, message: Message) -> None:
        self.sent.append(type(message).__name__)
        self.inner.send(rank, message)  # type: ignore[attr-defined]

    def flush(self) -> None:
        self.inner.flush()  # type: ignore[attr-defined]


def test_every_message_is_counted_the_stop_too(tmp_path: Path) -> None:
    settings = Settings(eventservice=EventServiceSettings(mode="sleep"), node=NodeSettings(cores=2))
    settings = replace(settings, parallel=replace(settings.parallel, journal_flush_s=0.01))
    layout = WorkLayout(tmp_path)
    comm = Scripted(settings, layout, None, 0, 0.001)
    link = LocalLink()
    transport = Recording(link.coordinator)
    jnl = Journal(layout.journal)
    coordinator = Coordinator(transport, settings, layout, comm, jnl, lambda line: None)
    worker = par.make_worker(par.World(0, 1, "h"), link.worker, settings, layout, tuple)
    par.run_single(coordinator, worker, settings, SignalFlag())
    jnl.close()
    assert len(set(comm.reported)) == N_RANGES
    messages = coordinator.summary()["messages"]
    assert transport.sent.count("Stop") == 1
    assert messages["out"] == len(transport.sent)  # main left the Stop out
    assert messages["out_by_type"] == dict(sorted(Counter(transport.sent).items()))
    assert messages["in"] == len(transport.received)
    assert messages["in_by_type"] == dict(sorted(Counter(transport.received).items()))
    # the worker's end counted the same messages from its side
    assert link.worker.counts.received_by_type() == messages["out_by_type"]
    assert link.worker.counts.sent_by_type() == messages["in_by_type"]


def test_counts_by_type() -> None:
    counts = MessageCounts()
    counts.sent(Stop(drain=False))
    counts.sent(Stop(drain=True))
    counts.received(WorkerUpdate(None, (), (), 1, 1, 0))
    assert (counts.n_sent, counts.n_received) == (2, 1)
    assert counts.summary() == {
        "in": 1,
        "out": 2,
        "in_by_type": {"WorkerUpdate": 1},
        "out_by_type": {"Stop": 2},
    }
