"""A total order over every key a job may emit, for keys Python cannot compare with each other.

Keys normally sort in their natural order. ``None`` and mixes of types (an int and a str) do not compare in
Python; :func:`total_order` ranks them instead: None, then numbers (booleans among them), strings, bytes,
sequences (element by element), maps, anything else. Within a rank it is the natural order, so wherever
the natural order is defined the two agree, and runs sorted either way merge correctly.
"""

from __future__ import annotations

from typing import Any

_RANKS = {type(None): 0, bool: 1, int: 1, float: 1, str: 2, bytes: 3, tuple: 4, list: 4, dict: 5}


def total_order(value: Any) -> tuple[Any, ...]:
    """A sort key defined for every key msgpack carries: None, then numbers (booleans among them), strings,
    bytes, sequences (element by element), maps; each group in its natural order."""
    rank = _RANKS.get(type(value), 6)
    if rank == 4:
        return (4, tuple(map(total_order, value)))
    if rank == 5:
        return (5, tuple(sorted((total_order(k), total_order(v)) for k, v in value.items())))
    if rank == 0:
        return (0,)
    if rank == 6:
        return (6, type(value).__name__, repr(value))
    return (rank, value)
