"""Slurm / Cray compressed host lists: ``nid00[0099,0156-0157]`` -> ``nid000099 nid000156 nid000157``.

Pure functions, no I/O; used by the Slurm plugin for ``SLURM_JOB_NODELIST`` and by anything that reads a
node list in that notation (``scontrol show job``'s ``NodeList=``).
"""

from __future__ import annotations

import itertools

__all__ = ["expand_counts", "expand_hostlist"]


def _split_top_level(text: str) -> list[str]:
    """Split at commas that are outside brackets."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, char in enumerate(text):
        if char == "[":
            depth += 1
            if depth > 1:
                raise ValueError(f"nested brackets in host list {text!r}")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in host list {text!r}")
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError(f"unbalanced '[' in host list {text!r}")
    parts.append(text[start:])
    return parts


def _expand_range(item: str, text: str) -> list[str]:
    """``0099`` -> [``0099``]; ``0156-0157`` -> [``0156``, ``0157``] (zero padding kept)."""
    low, sep, high = item.partition("-")
    if not low.isdigit() or (sep and not high.isdigit()):
        raise ValueError(f"bad range {item!r} in host list {text!r} (expected N or N-M)")
    if not sep:
        return [low]
    first, last = int(low), int(high)
    if last < first:
        raise ValueError(f"descending range {item!r} in host list {text!r}")
    width = len(low)
    return [str(n).zfill(width) for n in range(first, last + 1)]


def _expand_one(pattern: str, text: str) -> list[str]:
    """Expand one comma-free (outside brackets) pattern with any number of bracket groups."""
    pieces: list[list[str]] = []
    rest = pattern
    while rest:
        open_at = rest.find("[")
        if open_at < 0:
            if "]" in rest:
                raise ValueError(f"unbalanced ']' in host list {text!r}")
            pieces.append([rest])
            break
        close_at = rest.find("]", open_at)
        if close_at < 0:
            raise ValueError(f"unbalanced '[' in host list {text!r}")
        if open_at:
            pieces.append([rest[:open_at]])
        inner = rest[open_at + 1 : close_at]
        if not inner:
            raise ValueError(f"empty brackets in host list {text!r}")
        values: list[str] = []
        for item in inner.split(","):
            values.extend(_expand_range(item.strip(), text))
        pieces.append(values)
        rest = rest[close_at + 1 :]
    return ["".join(combo) for combo in itertools.product(*pieces)]


def expand_hostlist(text: str) -> tuple[str, ...]:
    """Expand a compressed host list into host names, in order.

    Parameters
    ----------
    text
        ``nid00[0099,0156-0157]``, ``n[1-4]``, ``a[01-03]b``, ``rack[1-2]-n[1-2]``, ``n1,m[2-3],x``.
        Zero padding of a range is kept (``a[01-03]`` -> ``a01 a02 a03``); several bracket groups in one
        name give every combination, the first group varying slowest (as Slurm orders them).

    Returns
    -------
    tuple of str
        The host names; empty for an empty or blank text.

    Raises
    ------
    ValueError
        Unbalanced or nested brackets, an empty name, a range that is not ``N`` or ``N-M`` or that
        descends; the message names the text.
    """
    stripped = text.strip()
    if not stripped:
        return ()
    hosts: list[str] = []
    for part in _split_top_level(stripped):
        pattern = part.strip()
        if not pattern:
            raise ValueError(f"empty host name in host list {text!r}")
        if any(c.isspace() for c in pattern):
            raise ValueError(f"white space inside a host name in host list {text!r}")
        hosts.extend(_expand_one(pattern, text))
    return tuple(hosts)


def expand_counts(text: str) -> tuple[int, ...]:
    """Expand Slurm's compressed per-node counts: ``4(x2),2`` -> ``(4, 4, 2)``.

    The notation of ``SLURM_JOB_CPUS_PER_NODE`` and ``SLURM_TASKS_PER_NODE``.

    Raises
    ------
    ValueError
        An item is not ``N`` or ``N(xM)``; the message names the text.
    """
    counts: list[int] = []
    stripped = text.strip()
    if not stripped:
        return ()
    for item in stripped.split(","):
        value, _, repeat = item.strip().partition("(")
        try:
            number = int(value)
            times = 1
            if repeat:
                if not (repeat.startswith("x") and repeat.endswith(")")):
                    raise ValueError(item)
                times = int(repeat[1:-1])
        except ValueError:
            raise ValueError(f"bad count {item!r} in {text!r} (expected N or N(xM))") from None
        if number < 0 or times < 1:
            raise ValueError(f"bad count {item!r} in {text!r} (expected N or N(xM))")
        counts.extend([number] * times)
    return tuple(counts)
