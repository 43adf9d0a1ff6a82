"""A worker's request for work as it stands at rank 0.

A worker asks for cores' worth of work once; rank 0 hands it out in as many assignments as its batch
size takes and keeps the rest of the request standing (`hpcpilot.parallel.books.Books.assign`), so
the worker does not ask again until all of it came. While the answer is due any moment, an idle
worker's results wait for its next message rather than going alone: one message per range at most.
"""

from __future__ import annotations


class StandingRequest:
    """What a worker asked for and has not received yet, and how long rank 0 takes to answer.

    ``wait_s`` is how long results may wait for the answer: twice the moving mean of the answer
    delays seen, 1 ms to 50 ms. Past it, rank 0 has no work to send now, and an idle worker reports
    what it has without waiting more.
    """

    def __init__(self, initial_answer_s: float = 0.005) -> None:
        self.cores = 0  # cores' worth of work not received yet
        self.sent_at = 0.0
        self.answer_s = initial_answer_s
        self._answered = True

    @property
    def outstanding(self) -> bool:
        """Whether some of the request has not come yet."""
        return self.cores > 0

    def sent(self, cores: int, now: float) -> None:
        """A request for ``cores`` went out at ``now`` (it replaces what was left of the last one)."""
        self.cores, self.sent_at, self._answered = cores, now, False

    def received(self, cores: int, now: float) -> None:
        """An assignment of ``cores``' worth of work came at ``now``."""
        self.cores -= cores
        if not self._answered:
            self._answered = True
            self.answer_s += 0.2 * (now - self.sent_at - self.answer_s)

    def wait_s(self) -> float:
        """How long an idle worker's results wait for the answer to its request."""
        return min(max(2 * self.answer_s, 0.001), 0.05)

    def answer_due(self, now: float) -> bool:
        """Whether the answer to the request is due any moment (results may wait for it)."""
        return self.outstanding and now - self.sent_at < self.wait_s()
