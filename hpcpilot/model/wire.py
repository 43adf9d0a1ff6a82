"""Compact pickling for the objects that cross MPI by the thousand (ranges, results, messages).

A frozen, slotted dataclass pickles by default through generated ``__getstate__``/``__setstate__``
that walk ``dataclasses.fields()`` on every object; :func:`compact_pickle` makes it pickle as
``(cls, (field values...))`` instead, taken in C by an ``operator.attrgetter``.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, TypeVar

C = TypeVar("C", bound=type)


def compact_pickle(cls: C) -> C:
    """Class decorator: pickle instances of a dataclass as its constructor arguments."""
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    if len(names) == 1:
        single = operator.attrgetter(names[0])

        def reduce_one(self: Any) -> tuple[type, tuple[Any, ...]]:
            return cls, (single(self),)

        setattr(cls, "__reduce__", reduce_one)  # noqa: B010 - mypy forbids assigning a method
        return cls
    getter = operator.attrgetter(*names)

    def reduce_many(self: Any) -> tuple[type, tuple[Any, ...]]:
        return cls, getter(self)

    setattr(cls, "__reduce__", reduce_many)  # noqa: B010 - mypy forbids assigning a method
    return cls
