"""The dataflow graph (seed 002): data sets joined by operations, built lazily, checked before anything runs.

A :class:`Flow` holds the graph. Sources make data sets out of files (local, or ``store:/path`` on a
cluster) or Python values; every operation on a :class:`Dataset` returns a new one and runs nothing.
Operations are *narrow* (one record in, any records out, no data moves: ``map``, ``flat_map``, ``filter``,
``map_values``, ``key_by``, ``stateful_map``, and ``union`` of several data sets) or *wide* (records with
equal keys must meet: ``reduce_by_key``, ``fold_by_key``, ``group_by_key``, ``count_by_key``,
``frequencies``, ``distinct``, ``join``, ``sort_by``). :mod:`dynamr.dataflow.plan` turns a graph into
stages; :mod:`dynamr.dataflow.run` runs them.

Seed 002 builds a network first and connects it later, so a graph may be made with a cycle in it:
:meth:`Flow.placeholder` is a data set defined later with :meth:`Dataset.bind`. :func:`check` refuses a
cycle, naming the data sets on it, and reports an output that no source reaches.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dynamr.dataflow import aggregate
from dynamr.errors import BadRequestError
from dynamr.mapreduce.compressed import CODECS

if TYPE_CHECKING:
    from dynamr.dataflow.run import Results
    from dynamr.dataflow.session import Session

NARROW = frozenset({"map", "flat_map", "filter", "map_values", "key_by", "stateful_map"})
WIDE = frozenset({"reduce_by_key", "fold_by_key", "group_by_key", "count_by_key", "frequencies", "distinct",
                  "join", "sort_by", "aggregate"})
SOURCES = frozenset({"text", "json", "bytes", "whole_files", "feed"})
#: what each source kind reads its files as (the engine's input formats)
SOURCE_FORMATS = {"text": "text", "json": "json", "bytes": "bytes", "whole_files": "whole_file"}


#: how outputs are run and explained, filled in by :mod:`dynamr.dataflow.run` (imported with the package):
#: the graph knows nothing of the engine, and no module imports one that imports it back
ENGINE: dict[str, Callable[..., Any]] = {}


class GraphError(BadRequestError):
    """A graph that cannot run: a cycle, a data set never defined, an output no source reaches."""


@dataclass(eq=False)
class Dataset:
    """A lazily defined data set: the result of one operation on its parents."""

    flow: Flow
    kind: str
    parents: tuple[Dataset, ...] = ()
    #: the operation's function(s) and settings (see the methods that make each kind)
    fn: Any = None
    args: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    number: int = 0

    def __repr__(self) -> str:
        return f"<Dataset {self.label}>"

    @property
    def label(self) -> str:
        return self.name or f"{self.kind}#{self.number}"

    def _then(self, kind: str, fn: Any = None, parents: Sequence[Dataset] | None = None, **args: Any) -> Dataset:
        for parent in parents or (self,):
            if parent.flow is not self.flow:
                raise GraphError(f"{parent.label} belongs to another Flow: data sets of one graph only")
        return self.flow._add(Dataset(self.flow, kind, tuple(parents or (self,)), fn, dict(args)))

    # --- narrow operations -------------------------------------------------------------------------------

    def map(self, fn: Callable[[Any], Any]) -> Dataset:
        """``fn(record)`` for each record."""
        return self._then("map", _callable(fn, "map"))

    def flat_map(self, fn: Callable[[Any], Iterable[Any]]) -> Dataset:
        """Every item of ``fn(record)`` for each record (``str.split`` turns lines into words)."""
        return self._then("flat_map", _callable(fn, "flat_map"))

    def filter(self, fn: Callable[[Any], Any]) -> Dataset:
        """The records for which ``fn(record)`` is true."""
        return self._then("filter", _callable(fn, "filter"))

    def map_values(self, fn: Callable[[Any], Any]) -> Dataset:
        """``(key, fn(value))`` for each ``(key, value)`` record."""
        return self._then("map_values", _callable(fn, "map_values"))

    def key_by(self, fn: Callable[[Any], Any]) -> Dataset:
        """``(fn(record), record)`` for each record."""
        return self._then("key_by", _callable(fn, "key_by"))

    def stateful_map(self, fn: Callable[[Any, Any], tuple[Any, Iterable[Any]]], initial: Any = None) -> Dataset:
        """Seed 002's stateful multi-map: ``fn(state, record)`` returns ``(new state, records out)``; the
        state starts as ``initial`` in each partition (a copy of it) and lives as long as the partition."""
        return self._then("stateful_map", _callable(fn, "stateful_map"), initial=initial)

    def union(self, *others: Dataset) -> Dataset:
        """The records of this data set and of ``others``."""
        return self._then("union", parents=(self, *others))

    # --- wide operations ---------------------------------------------------------------------------------

    def reduce_by_key(self, fn: Callable[[Any, Any], Any], partitions: int | None = None) -> Dataset:
        """``(key, fn(fn(v1, v2), v3)...)`` per key of ``(key, value)`` records; ``fn`` must be associative
        and commutative (it is applied on the map side first). ``operator.add`` runs as a running sum."""
        return self._then("reduce_by_key", _callable(fn, "reduce_by_key"), partitions=partitions)

    def fold_by_key(self, zero: Any, fn: Callable[[Any, Any], Any], partitions: int | None = None) -> Dataset:
        """Like :meth:`reduce_by_key`, starting from ``zero`` (which ``fn`` must leave unchanged: it may be
        folded in once per map task, as Spark's ``foldByKey``)."""
        return self._then("fold_by_key", _callable(fn, "fold_by_key"), zero=zero, partitions=partitions)

    def group_by_key(self, partitions: int | None = None) -> Dataset:
        """``(key, [values...])`` per key of ``(key, value)`` records (values in no particular order)."""
        return self._then("group_by_key", partitions=partitions)

    def count_by_key(self, partitions: int | None = None) -> Dataset:
        """``(key, number of records with that key)`` per key of ``(key, value)`` records."""
        return self._then("count_by_key", partitions=partitions)

    def frequencies(self, partitions: int | None = None) -> Dataset:
        """``(record, how many times it occurs)`` per distinct record (Dask bag's ``frequencies``)."""
        return self._then("frequencies", partitions=partitions)

    def distinct(self, partitions: int | None = None) -> Dataset:
        """Each distinct record once."""
        return self._then("distinct", partitions=partitions)

    def join(self, other: Dataset, how: str = "inner", partitions: int | None = None) -> Dataset:
        """``(key, (left value, right value))`` for every pair of records with equal keys; ``how="left"``
        also gives ``(key, (left value, None))`` for a left key with no match on the right."""
        if how not in ("inner", "left"):
            raise GraphError(f"join: how must be 'inner' or 'left', not {how!r}")
        return self._then("join", parents=(self, other), how=how, partitions=partitions)

    def sort_by(self, fn: Callable[[Any], Any] | None = None, descending: bool = False,
                partitions: int | None = None) -> Dataset:
        """The records in total order of ``fn(record)`` (the record itself by default) across partitions:
        ranges cut at the quantiles of a sample, as TeraSort does."""
        return self._then("sort_by", None if fn is None else _callable(fn, "sort_by"), descending=descending,
                          partitions=partitions)

    # --- aggregations of the whole data set (see :mod:`dynamr.dataflow.aggregate`) --------------------------
    # Each is a data set of its own (one record, or a few for top, smallest and take), so it can be run with
    # other outputs, written, or fed to further operations; :meth:`value` runs it and returns its record.

    def _aggregate(self, how: aggregate.Aggregation) -> Dataset:
        return self._then("aggregate", how, partitions=1)

    def count(self) -> Dataset:
        """One record: how many records the data set has."""
        return self._aggregate(aggregate.Count())

    def sum(self) -> Dataset:
        """One record: the sum of the (numeric) records, 0 for an empty data set (anything else that adds
        has ``reduce(operator.add)``)."""
        return self._aggregate(aggregate.Sum())

    def min(self, key: Callable[[Any], Any] | None = None) -> Dataset:
        """One record: the smallest (by ``key``); none for an empty data set."""
        return self._aggregate(aggregate.Reduce(min, "min", _optional(key, "min")))

    def max(self, key: Callable[[Any], Any] | None = None) -> Dataset:
        """One record: the largest (by ``key``); none for an empty data set."""
        return self._aggregate(aggregate.Reduce(max, "max", _optional(key, "max")))

    def mean(self) -> Dataset:
        """One record: the mean of the (numeric) records; none for an empty data set."""
        return self._aggregate(aggregate.Mean())

    def reduce(self, fn: Callable[[Any, Any], Any]) -> Dataset:
        """One record: ``fn(fn(r1, r2), r3)...`` over the records in the data set's order; ``fn`` must be
        associative (it is applied within each map task first). None for an empty data set."""
        return self._aggregate(aggregate.Reduce(_callable(fn, "reduce")))

    def fold(self, zero: Any, add: Callable[[Any, Any], Any],
             combine: Callable[[Any, Any], Any] | None = None) -> Dataset:
        """One record, Spark's ``aggregate``: each map task folds its records into a copy of ``zero`` with
        ``add(acc, record)``; the tasks' results are merged in order with ``combine(acc1, acc2)`` (``add``
        when not given). ``zero`` may be any Python value (a set, a dict); an empty data set gives it."""
        merge = _callable(add, "fold") if combine is None else _callable(combine, "fold")
        return self._aggregate(aggregate.Fold(zero, _callable(add, "fold"), merge))

    def top(self, n: int, key: Callable[[Any], Any] | None = None) -> Dataset:
        """The ``n`` largest records (by ``key``), largest first (Dask bag's ``topk``, Spark's ``top``)."""
        return self._aggregate(aggregate.Top(_count_of(n, "top"), _optional(key, "top")))

    def smallest(self, n: int, key: Callable[[Any], Any] | None = None) -> Dataset:
        """The ``n`` smallest records (by ``key``), smallest first (Spark's ``takeOrdered``)."""
        return self._aggregate(aggregate.Top(_count_of(n, "smallest"), _optional(key, "smallest"), smallest=True))

    def take(self, n: int) -> Dataset:
        """The first ``n`` records in the data set's order (files in the order given, lines in order). Map
        tasks stop reading once they have ``n`` records, so a peek at a large input reads little of it."""
        return self._aggregate(aggregate.Take(_count_of(n, "take")))

    def value(self, session: Session | None = None) -> Any:
        """Run this data set and return its one record (``words.count().value()``)."""
        return self.flow.run(self.collect(), session=session).value(self)

    # --- outputs -----------------------------------------------------------------------------------------

    def write(self, path: str, fmt: str = "text", compression: str | None = None) -> Output:
        """An output that writes part files into directory ``path`` (local, or ``store:/path``): ``text``
        (``key TAB value`` for pairs, the record otherwise) or ``json`` (one JSON value per line);
        ``compression`` "gzip", "bzip2" or "xz" writes them compressed (``part-00000.gz``)."""
        if fmt not in ("text", "json"):
            raise GraphError(f"write: fmt must be 'text' or 'json', not {fmt!r}")
        if compression is not None and compression not in CODECS:
            raise GraphError(f"write: compression must be one of {', '.join(CODECS)} or None, not {compression!r}")
        return Output(self, "write", path=path, fmt=fmt, compression=compression)

    def drop(self) -> Output:
        """An output that computes the data set and keeps nothing (seed 002's null sink)."""
        return Output(self, "drop")

    def collect(self, callback: Callable[[Any], None] | None = None) -> Output:
        """An output whose records come back to this process: in the results of :meth:`Flow.run`, or to
        ``callback`` one by one as each part arrives."""
        return Output(self, "collect", callback=callback)

    def run(self, callback: Callable[[Any], None] | None = None, session: Session | None = None) -> list[Any]:
        """Run what this data set needs and return its records (or give each to ``callback``, and return
        an empty list)."""
        results = self.flow.run(self.collect(callback), session=session)
        return results[self]

    def bind(self, definition: Dataset) -> None:
        """Define a placeholder (see :meth:`Flow.placeholder`) as ``definition``."""
        if self.kind != "placeholder":
            raise GraphError(f"{self.label} is not a placeholder: only placeholders are bound")
        if self.parents:
            raise GraphError(f"{self.label} is already bound")
        self.parents = (definition,)
        if not definition.name:  # errors about it then name it as the graph's author does
            definition.name = self.name

    def explain(self) -> str:
        """The stages that compute this data set (see :meth:`Flow.explain`)."""
        return self.flow.explain(self.collect())


@dataclass(eq=False)
class Output:
    dataset: Dataset
    kind: str  # "collect", "write" or "drop"
    path: str = ""
    fmt: str = "text"
    callback: Callable[[Any], None] | None = None
    compression: str | None = None


class Flow:
    """A dataflow graph; data sets are made by its sources and by operations on them."""

    def __init__(self, session: Session | None = None) -> None:
        self.session = session
        self.datasets: list[Dataset] = []
        self._numbers = itertools.count(1)
        #: data sets some run of this flow has output (a source output as it is feeds that run)
        self.outputs_run: set[int] = set()

    def _add(self, dataset: Dataset) -> Dataset:
        dataset.number = next(self._numbers)
        self.datasets.append(dataset)
        return dataset

    # --- sources -----------------------------------------------------------------------------------------

    def _source(self, kind: str, paths: Sequence[str], name: str | None) -> Dataset:
        if not paths:
            raise GraphError(f"{kind}: give at least one file or directory")
        return self._add(Dataset(self, kind, (), None, {"paths": tuple(str(p) for p in paths)}, name or ""))

    def text(self, *paths: str, name: str | None = None) -> Dataset:
        """The lines of text files (or of every file under directories), without their newlines."""
        return self._source("text", paths, name)

    def json_lines(self, *paths: str, name: str | None = None) -> Dataset:
        """One decoded JSON value per non-blank line."""
        return self._source("json", paths, name)

    def bytes_lines(self, *paths: str, name: str | None = None) -> Dataset:
        """The lines of files as bytes, exactly as stored."""
        return self._source("bytes", paths, name)

    def whole_files(self, *paths: str, name: str | None = None) -> Dataset:
        """``(path, contents as bytes)`` per file."""
        return self._source("whole_files", paths, name)

    def feed(self, values: Iterable[Any], name: str | None = None) -> Dataset:
        """Python values fed in (seed 002's feed-value-list): str, bytes, numbers, None, bools, and tuples,
        lists or dicts of them (lists come back as tuples)."""
        return self._add(Dataset(self, "feed", (), None, {"values": list(values)}, name or ""))

    def placeholder(self, name: str) -> Dataset:
        """A data set defined later (``placeholder.bind(dataset)``), so parts of a graph may be built in any
        order; a placeholder never bound, or bound into a cycle, is refused before anything runs."""
        return self._add(Dataset(self, "placeholder", (), None, {}, name))

    # --- running -----------------------------------------------------------------------------------------

    def run(self, *outputs: Output | Dataset, session: Session | None = None) -> Results:
        """Run every output (a data set given as is is collected) in one go; returns the collected records
        per data set."""
        results: Results = ENGINE["run"]([o if isinstance(o, Output) else o.collect() for o in outputs],
                                         session or self.session)
        return results

    def explain(self, *outputs: Output | Dataset) -> str:
        """The stages the outputs run as: what each fuses, where data is shuffled, what combines map-side."""
        text: str = ENGINE["explain"]([o if isinstance(o, Output) else o.collect() for o in outputs])
        return text


def _callable(fn: Any, op: str) -> Any:
    if not callable(fn):
        raise GraphError(f"{op}: expected a function, got {type(fn).__name__} {fn!r}")
    return fn


def _optional(fn: Any, op: str) -> Any:
    return None if fn is None else _callable(fn, op)


def _count_of(n: Any, op: str) -> int:
    if type(n) is not int or n < 1:
        raise GraphError(f"{op}: n must be a whole number of records, 1 or more, not {n!r}")
    return n


def resolve(dataset: Dataset) -> Dataset:
    """A bound placeholder is the data set it was bound to."""
    seen: list[Dataset] = []
    while dataset.kind == "placeholder":
        if not dataset.parents:
            raise GraphError(f"placeholder {dataset.label} is never bound: bind it to a data set")
        if dataset in seen:
            raise GraphError("a cycle of placeholders: " + " -> ".join(d.label for d in [*seen, dataset]))
        seen.append(dataset)
        dataset = dataset.parents[0]
    return dataset


def parents_of(dataset: Dataset) -> tuple[Dataset, ...]:
    return tuple(resolve(p) for p in dataset.parents)


def check(outputs: Sequence[Output]) -> list[Dataset]:
    """Every data set the outputs need, parents before children; a cycle is refused with the data sets on
    it named, and so is an output that reaches no source."""
    if not outputs:
        raise GraphError("nothing to run: give at least one output (a data set, or .write()/.drop()/.collect())")
    order: list[Dataset] = []
    state: dict[int, str] = {}  # id -> "visiting" | "done"
    for output in outputs:
        start = resolve(output.dataset)
        stack: list[tuple[Dataset, int]] = [(start, 0)]
        path: list[Dataset] = []
        while stack:
            node, index = stack.pop()
            if index == 0:
                if state.get(id(node)) == "done":
                    continue
                if state.get(id(node)) == "visiting":
                    cycle = [*path[path.index(node):], node]
                    raise GraphError("the graph has a cycle: " + " -> ".join(d.label for d in cycle)
                                     + "; a data set cannot depend on itself")
                state[id(node)] = "visiting"
                path.append(node)
            parents = parents_of(node)
            if index < len(parents):
                stack.append((node, index + 1))
                stack.append((parents[index], 0))
                continue
            state[id(node)] = "done"
            path.pop()
            order.append(node)
        if not _reaches_source(start):
            raise GraphError(f"output {output.dataset.label} is not connected to any source")
    return order


def _reaches_source(dataset: Dataset) -> bool:
    return dataset.kind in SOURCES or any(_reaches_source(p) for p in parents_of(dataset))


def unused_sources(flow: Flow, needed: Sequence[Dataset]) -> list[Dataset]:
    """Sources of the flow that feed nothing at all: no operation reads them and this run does not
    output them (reported, not refused: a dangling input is usually a slip)."""
    flow.outputs_run |= {id(d) for d in needed}
    read = {id(p) for d in flow.datasets for p in d.parents}
    used = read | flow.outputs_run
    return [d for d in flow.datasets if d.kind in SOURCES and id(d) not in used]
