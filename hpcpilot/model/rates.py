"""The one rule for a run's rate, shared by the live status line, the summary and ``hpcpilot status``.

A rate is **ranges final (finished or fatal) per second** of a span of time. What differs between
the places that show one is only the span:

* the live status line (`hpcpilot.parallel.status.RateMeter`): the last 30 s, ending now;
* ``hpcpilot status`` of a run going on (`hpcpilot.monitor.runview.RunView.rate`): the journal's last
  `RATE_WINDOW_S` seconds, not before the run's start;
* the summary (``summary.json``'s ``ranges_per_s``) and ``hpcpilot status`` of an ended run: the
  whole run, from its start to its end.
"""

from __future__ import annotations

#: Seconds over which ``hpcpilot status`` measures the rate of a run going on.
RATE_WINDOW_S = 120.0

#: Seconds over which the live status line measures the rate.
LIVE_WINDOW_S = 30.0


def ranges_per_s(final: int, seconds: float) -> float:
    """Ranges final (finished or fatal) per second of ``seconds``; 0 for an empty span.

    Parameters
    ----------
    final
        Ranges that became final (finished or fatal) in the span.
    seconds
        The span's length in seconds.

    Returns
    -------
    float
        ``final / seconds``, or 0.0 when ``seconds`` is not positive.
    """
    return final / seconds if seconds > 0 else 0.0
