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


def hash_partitions(keys: list[Any], num_partitions: int) -> list[int]:
    """``[hash_partition(key, num_partitions) for key in keys]``, in C when every key is a ``str`` (the
    common case: no Python call per key)."""
    if num_partitions == 1:
        return [0] * len(keys)
    if set(map(type, keys)) <= {str}:
        hashes = map(xxhash.xxh3_64_intdigest, map(_ENCODE, keys))
        return list(map(operator.mod, hashes, itertools.repeat(num_partitions)))
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
