"""Aggregations of a whole data set (seed 002's aggregation step): count, sum, min, max, mean, reduce,
fold, aggregate, the n largest or smallest, and the first n records.

An aggregation is computed in two steps, as a combiner and a reducer would be:
1. each map task folds its own records into one *partial* (:meth:`Aggregation.task`), in C where it can
   (``sum``, ``min``, ``max``, ``heapq.nlargest``, ``itertools.islice``);
2. a single reduce task gets every task's partial, **in the data set's order** (each partial is keyed by
   where its records come from: the input's place among the stage's files, then the byte offset of the
   split), merges them (:meth:`Aggregation.merge`) and gives the aggregation's records
   (:meth:`Aggregation.finish`).

So the shuffle carries one small record per map task, whatever the size of the data set. Because partials
meet in order, ``reduce`` and ``fold`` need only an associative function (string concatenation works), and
``take`` returns the data set's first records. A partial travels pickled (cloudpickle), so it may be any
Python object: a set, a Counter, a user's class.

An aggregation of an empty data set is an empty data set where no value makes sense (``min``, ``max``,
``mean``, ``reduce``), and the neutral value otherwise (``count`` and ``sum``: 0; ``fold`` and
``aggregate``: their zero).

This module is pure logic: no I/O, and nothing of the engine.
"""

from __future__ import annotations

import copy
import functools
import heapq
import itertools
import operator
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

#: no value at all (an empty task's min, max or reduce); never leaves this module's partials
_NOTHING: tuple[bool, Any] = (False, None)
_first = operator.itemgetter(0)


class Aggregation:
    """Base: one partial per map task, merged in the data set's order by one reduce task."""

    #: how :meth:`~dynamr.dataflow.graph.Flow.explain` names it
    label = "aggregate"

    def describe(self) -> str:
        return self.label

    def task(self, records: Iterator[Any]) -> Any:
        raise NotImplementedError

    def merge(self, partials: list[Any]) -> Any:
        """The partial of every task together, given in the data set's order (an empty list: no task)."""
        raise NotImplementedError

    def finish(self, partial: Any) -> list[Any]:
        """The aggregation's records."""
        return [partial]


def _count(records: Iterator[Any]) -> int:
    """How many records, with the loop in C (the counter advances once per record)."""
    counter = itertools.count()
    deque(zip(records, counter, strict=False), maxlen=0)
    return next(counter)


class Count(Aggregation):
    label = "count"

    def task(self, records: Iterator[Any]) -> int:
        return _count(records)

    def merge(self, partials: list[Any]) -> int:
        return sum(partials)


class Sum(Aggregation):
    """The sum of numbers (0 when there are none); other things that add (``timedelta``, lists) have
    ``reduce(operator.add)``."""

    label = "sum"

    def task(self, records: Iterator[Any]) -> Any:
        return sum(records)

    def merge(self, partials: list[Any]) -> Any:
        return sum(partials)


class Mean(Aggregation):
    label = "mean"

    def task(self, records: Iterator[Any]) -> tuple[int, Any]:
        counter = itertools.count()
        total = sum(map(_first, zip(records, counter, strict=False)))  # counts as it sums, both in C
        return next(counter), total

    def merge(self, partials: list[Any]) -> tuple[int, Any]:
        return sum(n for n, _ in partials), sum(total for _, total in partials)

    def finish(self, partial: tuple[int, Any]) -> list[Any]:
        n, total = partial
        return [total / n] if n else []


@dataclass
class Reduce(Aggregation):
    """``fn`` folded over the records in order: ``fn(fn(r1, r2), r3)...``; no record if there are none.
    ``min`` and ``max`` are this with the builtins, which run their whole task in C."""

    fn: Callable[[Any, Any], Any]
    label: str = "reduce"
    key: Callable[[Any], Any] | None = None

    def task(self, records: Iterator[Any]) -> tuple[bool, Any]:
        if self.fn is min or self.fn is max:
            value = self.fn(records, key=self.key, default=_NOTHING) if self.key else \
                self.fn(records, default=_NOTHING)
            return _NOTHING if value is _NOTHING else (True, value)
        first = next(records, _NOTHING)
        return _NOTHING if first is _NOTHING else (True, functools.reduce(self.fn, records, first))

    def merge(self, partials: list[Any]) -> tuple[bool, Any]:
        values = [value for present, value in partials if present]
        if not values:
            return _NOTHING
        if self.fn is min or self.fn is max:
            return True, self.fn(values, key=self.key) if self.key else self.fn(values)
        return True, functools.reduce(self.fn, values)

    def finish(self, partial: tuple[bool, Any]) -> list[Any]:
        present, value = partial
        return [value] if present else []


@dataclass
class Fold(Aggregation):
    """Spark's ``aggregate``: each task folds its records into a copy of ``zero`` with ``add(acc, record)``,
    then the tasks' accumulators are merged in order with ``merge(acc1, acc2)``."""

    zero: Any
    add: Callable[[Any, Any], Any]
    combine: Callable[[Any, Any], Any]
    label: str = "fold"

    def task(self, records: Iterator[Any]) -> Any:
        return functools.reduce(self.add, records, copy.deepcopy(self.zero))

    def merge(self, partials: list[Any]) -> Any:
        if not partials:
            return copy.deepcopy(self.zero)
        return functools.reduce(self.combine, partials)


@dataclass
class Top(Aggregation):
    """The ``n`` largest records (``smallest``: the ``n`` smallest) by ``key``, largest (smallest) first;
    ties keep the data set's order, as ``heapq.nlargest`` does."""

    n: int
    key: Callable[[Any], Any] | None = None
    smallest: bool = False

    def describe(self) -> str:
        return f"{'smallest' if self.smallest else 'top'} {self.n}"

    def _pick(self, records: Iterable[Any]) -> list[Any]:
        pick = heapq.nsmallest if self.smallest else heapq.nlargest
        return pick(self.n, records, key=self.key)

    def task(self, records: Iterator[Any]) -> list[Any]:
        return self._pick(records)

    def merge(self, partials: list[Any]) -> list[Any]:
        return self._pick(itertools.chain.from_iterable(partials))

    def finish(self, partial: list[Any]) -> list[Any]:
        return list(partial)


@dataclass
class Take(Aggregation):
    """The first ``n`` records in the data set's order. A map task stops reading its split once it has
    ``n`` records, so taking a few records of a large input reads little of it."""

    n: int

    def describe(self) -> str:
        return f"first {self.n}"

    def task(self, records: Iterator[Any]) -> list[Any]:
        return list(itertools.islice(records, self.n))

    def merge(self, partials: list[Any]) -> list[Any]:
        return list(itertools.islice(itertools.chain.from_iterable(partials), self.n))

    def finish(self, partial: list[Any]) -> list[Any]:
        return list(partial)
