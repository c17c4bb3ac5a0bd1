"""Partitioners: which reducer a key goes to.

:func:`hash_partition` hashes the msgpack encoding of the key with xxh3, so the same key lands in the same
partition in every process and on every machine (Python's ``hash`` is salted per process).
:class:`RangePartitioner` splits an ordered key space at sampled boundaries, giving each reducer a
contiguous range: concatenating the reducers' outputs in order is then a total order (TeraSort).
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Sequence
from typing import Any

import msgpack
import xxhash

from dynamr.mapreduce.keys import total_order


def hash_partition(key: Any, num_partitions: int) -> int:
    if num_partitions == 1:
        return 0
    if isinstance(key, str):
        data = key.encode("utf-8", "surrogatepass")
    elif isinstance(key, bytes):
        data = b"\x00" + key
    else:
        data = b"\x01" + msgpack.packb(key, use_bin_type=True)
    return int(xxhash.xxh3_64_intdigest(data)) % num_partitions


_ENCODE = operator.methodcaller("encode", "utf-8", "surrogatepass")
#: string keys whose partition a process remembers (a task process runs many tasks of a job, whose keys
#: repeat from task to task: a word count's vocabulary), at most this many
KNOWN_KEYS = 200_000
#: keys looked up first, to tell whether a batch's keys are mostly known
_PROBE = 256


class _Known(dict[str, int]):
    """Partitions of string keys for one number of partitions; an unknown key is hashed when looked up."""

    def __init__(self, num_partitions: int) -> None:
        super().__init__()
        self.num_partitions = num_partitions

    def __missing__(self, key: str) -> int:
        number = self[key] = int(xxhash.xxh3_64_intdigest(_ENCODE(key))) % self.num_partitions
        return number


_known: dict[int, _Known] = {}


def hash_partitions(keys: list[Any], num_partitions: int) -> list[int]:
    """``[hash_partition(key, num_partitions) for key in keys]``, in C when every key is a ``str`` (the
    common case: no Python call per key). String keys seen before in this process cost one dict lookup
    (their ``hash`` is cached in the string): when most of a sample of the batch is known, the batch is
    looked up; else it is hashed in C, and remembered while the process knows fewer than
    :data:`KNOWN_KEYS` keys."""
    if num_partitions == 1:
        return [0] * len(keys)
    if set(map(type, keys)) <= {str}:
        known = _known.get(num_partitions)
        if known is None:
            known = _known[num_partitions] = _Known(num_partitions)
        probe = keys[:_PROBE]
        if probe and 2 * sum(map(known.__contains__, probe)) >= len(probe):
            numbers = list(map(known.__getitem__, keys))  # an unknown key is hashed (and remembered)
            if sum(map(len, _known.values())) > KNOWN_KEYS:
                _known.clear()
            return numbers
        hashes = map(xxhash.xxh3_64_intdigest, map(_ENCODE, keys))
        numbers = list(map(operator.mod, hashes, itertools.repeat(num_partitions)))
        if sum(map(len, _known.values())) + len(keys) <= KNOWN_KEYS:
            known.update(zip(keys, numbers, strict=True))
        return numbers
    return [hash_partition(key, num_partitions) for key in keys]


class RangePartitioner:
    """Partition by sorted boundaries: keys below ``boundaries[0]`` go to 0, and so on.

    The map side recognises it and, instead of calling it per record, sorts its buffer once and cuts it at
    the boundaries (see ``MapOutputCollector``)."""

    def __init__(self, boundaries: Sequence[Any]) -> None:
        self.boundaries = list(boundaries)

    def __call__(self, key: Any, num_partitions: int) -> int:
        try:
            return min(bisect.bisect_right(self.boundaries, key), num_partitions - 1)
        except TypeError:  # a key of another type than the boundaries: place it in the total order
            bounds = [total_order(b) for b in self.boundaries]
            return min(bisect.bisect_right(bounds, total_order(key)), num_partitions - 1)

    @classmethod
    def from_sample(cls, sample: Sequence[Any], num_partitions: int) -> RangePartitioner:
        """Boundaries at the quantiles of a sample of keys (in the total order if their types are mixed)."""
        try:
            ordered = sorted(sample)
        except TypeError:
            ordered = sorted(sample, key=total_order)
        if num_partitions <= 1 or not ordered:
            return cls([])
        step = len(ordered) / num_partitions
        return cls([ordered[min(len(ordered) - 1, int(step * i))] for i in range(1, num_partitions)])
