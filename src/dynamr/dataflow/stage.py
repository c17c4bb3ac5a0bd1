"""One stage of a dataflow graph as a job of the MapReduce engine (what task processes run).

The client writes a small job file per stage: a subclass of :class:`StageJob` whose ``SPEC`` is the
stage's :class:`StageSpec` (its functions included), serialized with cloudpickle. Tasks load it like any
job file stored in the cluster (only authenticated clients store job files), so stages get the engine's
splits, scheduling, intermediate data in the store and fault tolerance unchanged.

A map task reads its split, finds which of the stage's inputs the split's file belongs to, and runs the
fused chain of every path from that input (:mod:`dynamr.dataflow.fast`) over the whole record stream, once
(``MRStep.mapper_stream``). What it emits depends on the wide operation: ``frequencies`` and
``count_by_key`` count a whole task's records in C (``collections.Counter``) and emit one record per
key; the others emit (key, value) pairs that the engine combines map-side when the operation allows it.
A reduce task gets each key's values (``MRStep.reducer_stream``), applies the wide operation, then the
narrow operations after it. Records between stages are (None, record) pairs in files of records.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import operator
import pickle
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cloudpickle

from dynamr.dataflow.aggregate import Aggregation
from dynamr.dataflow.fast import Chain, compile_chain, fan_out, pairs_of, splits_text_into_words, words_of
from dynamr.mapreduce.api import MRJob, MRStep
from dynamr.mapreduce.splits import READERS, REPLACED, lines_of, text_chunks

_second = operator.itemgetter(1)


@dataclass
class PathSpec:
    kinds: list[str]
    fns: list[Any]
    args: list[dict[str, Any]]
    side: int = 0


@dataclass
class InputSpec:
    #: the engine input format its files are read with
    fmt: str
    paths: list[PathSpec]


@dataclass
class StageSpec:
    #: input file -> index into ``inputs``
    files: dict[str, int]
    inputs: list[InputSpec]
    #: the wide operation (None: a map-only stage) and its settings
    wide: str | None = None
    fn: Any = None
    args: dict[str, Any] = field(default_factory=dict)
    post: PathSpec | None = None
    #: how records are written: "records" (for later stages and for collecting), "text" or "json" files
    output: str = "records"


def job_source(spec: StageSpec, name: str) -> str:
    """The text of a job file that runs ``spec``."""
    blob = base64.b85encode(cloudpickle.dumps(spec)).decode()
    fmt = "records" if spec.output == "records" else "text"
    partitioner = "range" if spec.wide == "sort_by" else "hash"
    return (f'"""Stage {name} of a dataflow graph (written by dynamr.dataflow)."""\n'
            "from dynamr.dataflow.stage import StageJob\n\n\n"
            f"class Stage(StageJob):\n    OUTPUT_FORMAT = {fmt!r}\n    PARTITIONER = {partitioner!r}\n"
            f"    SPEC = {blob!r}\n")


class StageJob(MRJob):
    SPEC: ClassVar[str] = ""

    def __init__(self, options: dict[str, str] | None = None) -> None:
        super().__init__(options)
        self.spec: StageSpec = _load(type(self).SPEC)
        #: each input file's place in the data set's order (an aggregation's partials are merged in it)
        self.positions = {path: i for i, path in enumerate(self.spec.files)}

    def whole_input(self, path: str) -> bool:
        index = self.spec.files.get(path)
        return index is not None and self.spec.inputs[index].fmt in ("records", "whole_file")

    def input_reader(self, keys: bool = True) -> Callable[..., Iterator[Any]]:
        """Each input's reader; text comes as chunks of whole lines (see :func:`_path_chain`), with no keys."""
        spec = self.spec

        def replaced(count: int) -> None:
            self.increment_counter(*REPLACED, count)

        def read(source: Any, split: Any) -> Iterator[Any]:
            fmt = spec.inputs[spec.files[split.path]].fmt
            if fmt == "text":
                return text_chunks(source, split, self.INPUT_ENCODING, replaced)
            return READERS[fmt](source, split)

        return read

    def steps(self) -> list[MRStep]:
        spec = self.spec
        if spec.wide is None:
            return [MRStep(mapper_stream=self._map)]
        combine, combiner = _COMBINING.get(spec.wide, (None, None))
        if spec.wide == "reduce_by_key" and spec.fn is operator.add:
            combine, combiner = "add", None  # a running a + b per key, no list of values
        return [MRStep(mapper_stream=self._map, reducer_stream=self._reduce, combine=combine,
                       combiner=None if combiner is None else combiner(spec))]

    # --- map side ---------------------------------------------------------------------------------------

    def _map(self, records: Iterator[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
        spec = self.spec
        entry = spec.inputs[spec.files[self.input_path]] if self.input_path in spec.files else spec.inputs[0]
        elements = records if entry.fmt in ("whole_file", "text") else map(_second, records)
        chains = [_path_chain(path, entry.fmt) for path in entry.paths]
        wide = spec.wide
        if wide == "join":
            tagged = [_tag(chain, path.side) for chain, path in zip(chains, entry.paths, strict=True)]
            return fan_out(elements, tagged)
        out = fan_out(elements, chains)
        if wide is None:
            return self._written(out)
        if wide == "aggregate":  # one partial per task, keyed by where in the data set its records are
            how: Aggregation = spec.fn
            where = (self.positions.get(self.input_path, 0), self.input_start)
            return iter(((where, pickle.dumps(how.task(out), pickle.HIGHEST_PROTOCOL)),))
        if wide == "frequencies":
            return iter(Counter(out).items())
        if wide == "count_by_key":
            return iter(Counter(map(operator.itemgetter(0), out)).items())
        if wide == "distinct":
            return zip(out, itertools.repeat(None))
        if wide == "sort_by":
            key = spec.fn
            descending = spec.args.get("descending", False)
            if key is None and not descending:
                first, second = itertools.tee(out)
                return zip(first, second, strict=True)
            first, second = itertools.tee(out)
            keys = map(key, first) if key is not None else first
            return zip(map(_negated, keys) if descending else keys, second, strict=True)
        return out  # reduce_by_key, fold_by_key, group_by_key: (key, value) pairs as they are

    # --- reduce side ------------------------------------------------------------------------------------

    def _reduce(self, groups: Iterator[tuple[Any, Iterator[Any]]]) -> Iterator[tuple[Any, Any]]:
        spec = self.spec
        out = _REDUCE[spec.wide or ""](spec, groups)
        if spec.post is not None:
            out = _compiled(spec.post)(out)
        return self._written(out)

    def _written(self, records: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
        """A stage's records as the engine's (key, value) output records."""
        if self.spec.output == "text":
            return map(text_record, records)
        if self.spec.output == "json":
            return map(json_record, records)
        return zip(itertools.repeat(None), records)


@functools.lru_cache(maxsize=8)
def _load(blob: str) -> StageSpec:
    spec = cloudpickle.loads(base64.b85decode(blob))
    if not isinstance(spec, StageSpec):
        raise TypeError("a dataflow stage job file without a stage in it")
    return spec


def _compiled(path: PathSpec) -> Chain:
    return compile_chain(path.kinds, path.fns, path.args).run


def _path_chain(path: PathSpec, fmt: str) -> Chain:
    """A path's fused chain over what its input's reader yields (text: chunks of whole lines)."""
    if fmt == "text" and splits_text_into_words(path.kinds, path.fns):
        rest = compile_chain(path.kinds[1:], path.fns[1:], path.args[1:]).run
        return lambda chunks: rest(words_of(chunks))
    chain = _compiled(path)
    if fmt == "text":
        return lambda chunks: chain(itertools.chain.from_iterable(map(lines_of, chunks)))
    return chain


def _tag(chain: Chain, side: int) -> Chain:
    def run(it: Iterator[Any]) -> Iterator[tuple[Any, Any]]:
        return ((key, (side, value)) for key, value in pairs_of(chain(it), "join"))

    return run


def _negated(key: Any) -> Any:
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return -key
    raise TypeError(f"sort_by(descending=True) sorts numeric keys; the key {key!r} is not a number: sort "
                    "ascending, or give a key function that returns a number")


def _reduce_combiner(spec: StageSpec) -> Callable[[Any, Iterable[Any]], Iterator[tuple[Any, Any]]]:
    fn = spec.fn

    def combiner(key: Any, values: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        yield key, functools.reduce(fn, values)

    return combiner


def _fold_combiner(spec: StageSpec) -> Callable[[Any, Iterable[Any]], Iterator[tuple[Any, Any]]]:
    fn, zero = spec.fn, spec.args.get("zero")

    def combiner(key: Any, values: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        yield key, functools.reduce(fn, values, zero)

    return combiner


def _distinct_combiner(spec: StageSpec) -> Callable[[Any, Iterable[Any]], Iterator[tuple[Any, Any]]]:
    def combiner(key: Any, values: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        yield key, None

    return combiner


_Combiner = Callable[[StageSpec], Callable[[Any, Iterable[Any]], Iterator[tuple[Any, Any]]]]
#: wide operation -> (engine fold, combiner made from the spec)
_COMBINING: dict[str, tuple[str | None, _Combiner | None]] = {
    # frequencies and count_by_key count a whole map task with one Counter (its keys are distinct already);
    # their "sum" lets the map side skip sorting and the reduce side add each key's counts in a dict
    "frequencies": ("sum", None), "count_by_key": ("sum", None), "reduce_by_key": (None, _reduce_combiner),
    "fold_by_key": (None, _fold_combiner), "distinct": (None, _distinct_combiner),
}


def _join(spec: StageSpec, groups: Iterator[tuple[Any, Iterator[Any]]]) -> Iterator[Any]:
    left_join = spec.args.get("how") == "left"
    for key, tagged in groups:
        lefts: list[Any] = []
        rights: list[Any] = []
        for side, value in tagged:
            (rights if side else lefts).append(value)
        if not rights and left_join:
            rights = [None]
        for left in lefts:
            for right in rights:
                yield key, (left, right)


def _aggregated(spec: StageSpec, groups: Iterator[tuple[Any, Iterator[Any]]]) -> Iterator[Any]:
    """Every map task's partial, in the data set's order (the keys sort so), merged and finished."""
    how: Aggregation = spec.fn
    return iter(how.finish(how.merge([pickle.loads(blob) for _, blobs in groups for blob in blobs])))


def _sorted_values(spec: StageSpec, groups: Iterator[tuple[Any, Iterator[Any]]]) -> Iterator[Any]:
    return itertools.chain.from_iterable(map(_second, groups))


_REDUCE: dict[str, Callable[[StageSpec, Iterator[tuple[Any, Iterator[Any]]]], Iterator[Any]]] = {
    "frequencies": lambda spec, groups: ((k, sum(v)) for k, v in groups),
    "count_by_key": lambda spec, groups: ((k, sum(v)) for k, v in groups),
    "reduce_by_key": lambda spec, groups: ((k, functools.reduce(spec.fn, v)) for k, v in groups),
    "fold_by_key": lambda spec, groups: ((k, functools.reduce(spec.fn, v, spec.args.get("zero")))
                                         for k, v in groups),
    "group_by_key": lambda spec, groups: ((k, list(v)) for k, v in groups),
    "distinct": lambda spec, groups: map(operator.itemgetter(0), groups),
    "join": _join,
    "sort_by": _sorted_values,
    "aggregate": _aggregated,
}


def text_record(record: Any) -> tuple[Any, Any]:
    """How a record is written to a text file: ``key TAB value`` for a pair, the record alone otherwise."""
    if type(record) is tuple and len(record) == 2:
        return record
    return None, record


def json_record(record: Any) -> tuple[Any, Any]:
    return None, json.dumps(record, ensure_ascii=False)
