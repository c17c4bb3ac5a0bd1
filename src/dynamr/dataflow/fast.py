"""Fused chains of narrow operations, as iterator pipelines that run in C wherever the functions allow.

A chain (``flat_map(str.split) -> map(str.lower) -> filter(str.isalpha)``) becomes one function from an
iterator of records to an iterator of records, built from ``map``, ``filter``, ``itertools.chain``,
``zip`` and ``tee``: the per-record loop is in C, and when every function in the chain is itself C code
(builtins, methods of built-in types such as ``str.split``, ``operator`` functions, a compiled regular
expression's bound methods) no Python frame runs per record at all. A Python function (a lambda) works
everywhere, at the cost of its own call. ``stateful_map`` is a Python generator over the partition, its
state carried from record to record (seed 002's stateful multi-map).
"""

from __future__ import annotations

import copy
import itertools
import operator
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

Chain = Callable[[Iterator[Any]], Iterator[Any]]

_C_TYPES = (types.BuiltinFunctionType, types.BuiltinMethodType, types.MethodDescriptorType,
            types.WrapperDescriptorType, types.MethodWrapperType, types.ClassMethodDescriptorType,
            operator.itemgetter, operator.attrgetter, operator.methodcaller)
_first = operator.itemgetter(0)
_second = operator.itemgetter(1)


def is_c_level(fn: Any) -> bool:
    """Whether calling ``fn`` runs no Python bytecode: C functions and methods, ``operator`` getters and
    callers, and built-in types used as functions (``int``, ``str``, ``len`` is a builtin)."""
    if isinstance(fn, _C_TYPES):
        return True
    return isinstance(fn, type) and fn.__module__ == "builtins"


@dataclass
class Compiled:
    run: Chain
    #: True when no Python function runs per record
    c_level: bool


def compile_chain(kinds: Sequence[str], fns: Sequence[Any], args: Sequence[dict[str, Any]] | None = None
                  ) -> Compiled:
    """One function applying the narrow operations ``kinds`` (with their functions) in order."""
    steps: list[Callable[[Iterator[Any]], Iterator[Any]]] = []
    c_level = True
    for i, (kind, fn) in enumerate(zip(kinds, fns, strict=True)):
        extra = args[i] if args is not None else {}
        steps.append(_STEPS[kind](fn, extra))
        c_level = c_level and kind != "stateful_map" and is_c_level(fn)

    def run(records: Iterator[Any]) -> Iterator[Any]:
        out: Iterator[Any] = records
        for step in steps:
            out = step(out)
        return out

    return Compiled(run, c_level)


def _map(fn: Any, _: dict[str, Any]) -> Chain:
    return lambda it: map(fn, it)


def _flat_map(fn: Any, _: dict[str, Any]) -> Chain:
    return lambda it: itertools.chain.from_iterable(map(fn, it))


def _filter(fn: Any, _: dict[str, Any]) -> Chain:
    return lambda it: filter(fn, it)


def _map_values(fn: Any, _: dict[str, Any]) -> Chain:
    def run(it: Iterator[Any]) -> Iterator[Any]:
        keys, values = itertools.tee(it)  # consumed in step by zip: the tee holds one record
        return zip(map(_first, keys), map(fn, map(_second, values)), strict=True)

    return run


def _key_by(fn: Any, _: dict[str, Any]) -> Chain:
    def run(it: Iterator[Any]) -> Iterator[Any]:
        records, again = itertools.tee(it)
        return zip(map(fn, records), again, strict=True)

    return run


def _stateful_map(fn: Any, extra: dict[str, Any]) -> Chain:
    initial = extra.get("initial")

    def run(it: Iterator[Any]) -> Iterator[Any]:
        state = copy.deepcopy(initial)
        for record in it:
            state, produced = fn(state, record)
            if produced is not None:
                yield from produced

    return run


_STEPS: dict[str, Callable[[Any, dict[str, Any]], Chain]] = {
    "map": _map, "flat_map": _flat_map, "filter": _filter, "map_values": _map_values, "key_by": _key_by,
    "stateful_map": _stateful_map,
}


def splits_text_into_words(kinds: Sequence[str], fns: Sequence[Any]) -> bool:
    """A chain over text whose first step is ``flat_map(str.split)``: the words of a whole chunk of lines
    are the words of its lines in turn (a newline is whitespace), so one ``str.split`` per chunk does it."""
    return bool(kinds) and kinds[0] == "flat_map" and fns[0] is str.split


#: characters of text per ``str.split`` call when a chunk is split into words: the words of a piece (their
#: list and string objects) stay in the CPU's cache while they are counted. Counting a 64 MB split of the
#: benchmark text took 1.09 s in pieces of 4-16 KB, 1.16 s in the reader's 1 MB chunks, 1.6 s in one piece
PIECE = 8_192


def words_of(chunks: Iterable[str], piece: int = PIECE) -> Iterator[str]:
    """The whitespace-separated words of chunks of whole lines, split a piece of lines at a time."""
    return itertools.chain.from_iterable(map(str.split, _pieces(chunks, piece)))


def _pieces(chunks: Iterable[str], piece: int) -> Iterator[str]:
    for text in chunks:
        size = len(text)
        if size <= piece:
            yield text
            continue
        start = 0
        while start < size:
            cut = text.find("\n", start + piece)
            end = size if cut < 0 else cut + 1
            yield text[start:end]
            start = end


def fan_out(records: Iterator[Any], chains: Sequence[Chain], batch: int = 4096) -> Iterator[Any]:
    """Every chain's output over the same records (a source feeding several paths of a stage): the chains
    read copies of the stream (``tee``) and are drained a batch at a time in turn, so the copies stay
    close together instead of one chain's whole input waiting in memory for the other."""
    if len(chains) == 1:
        return chains[0](records)
    outputs = [chain(copy_) for chain, copy_ in zip(chains, itertools.tee(records, len(chains)), strict=True)]
    return _round_robin(outputs, batch)


def _round_robin(outputs: list[Iterator[Any]], batch: int) -> Iterator[Any]:
    live = list(outputs)
    while live:
        for out in list(live):
            taken = list(itertools.islice(out, batch))
            yield from taken
            if len(taken) < batch:
                live.remove(out)


def pairs_of(records: Iterable[Any], what: str) -> Iterator[tuple[Any, Any]]:
    """``records`` checked to be (key, value) pairs, for an operation that needs them."""
    for record in records:
        if type(record) is not tuple or len(record) != 2:
            if isinstance(record, (list, tuple)) and len(record) == 2:
                yield (record[0], record[1])
                continue
            raise TypeError(f"{what} needs (key, value) records; got {record!r}: make pairs first "
                            "(for example .key_by(f) or .map(lambda x: (key, value)))")
        yield record
