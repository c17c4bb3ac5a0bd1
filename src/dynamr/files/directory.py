"""A directory's entries as an add-wins observed-remove set, so concurrent updates merge.

Each entry name maps to the unique tags of the adds that created it (each tag with the entry's kind, file
or directory) and the tags its removals observed. A name is present while some add tag is not removed.
Two clients creating different files at once leave sibling versions of the directory; :func:`merge` of
the siblings keeps both files. A removal only cancels the adds it saw, so a removed file stays removed,
while a re-creation racing with the removal survives (add wins). Pure logic and encoding.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgpack

from dynamr.errors import BadRequestError

FILE = "f"
DIRECTORY = "d"


@dataclass
class Entry:
    adds: dict[bytes, str] = field(default_factory=dict)  # tag -> kind
    removes: set[bytes] = field(default_factory=set)

    def live_tags(self) -> list[bytes]:
        return [t for t in self.adds if t not in self.removes]


Entries = dict[str, Entry]


def new_tag() -> bytes:
    """Unique, and ordered by time so the newest add decides an entry's kind."""
    return time.time_ns().to_bytes(8, "big") + os.urandom(6)


def add(entries: Entries, name: str, kind: str) -> None:
    entries.setdefault(name, Entry()).adds[new_tag()] = kind


def remove(entries: Entries, name: str) -> bool:
    entry = entries.get(name)
    if entry is None or not entry.live_tags():
        return False
    entry.removes.update(entry.adds)
    return True


def live(entries: Entries) -> dict[str, str]:
    """Present names and their kinds."""
    out = {}
    for name, entry in entries.items():
        tags = entry.live_tags()
        if tags:
            out[name] = entry.adds[max(tags)]
    return out


def merge(states: Iterable[Entries]) -> Entries:
    merged: Entries = {}
    for state in states:
        for name, entry in state.items():
            target = merged.setdefault(name, Entry())
            target.adds.update(entry.adds)
            target.removes.update(entry.removes)
    return merged


def encode(entries: Entries) -> bytes:
    packed: bytes = msgpack.packb({name: [list(e.adds.items()), sorted(e.removes)] for name, e in entries.items()},
                                  use_bin_type=True)
    return packed


def decode(data: bytes) -> Entries:
    try:
        raw = msgpack.unpackb(data, raw=False)
        return {str(name): Entry(adds={bytes(t): str(k) for t, k in adds}, removes={bytes(t) for t in removes})
                for name, (adds, removes) in raw.items()}
    except (ValueError, TypeError) as exc:
        raise BadRequestError(f"malformed directory entry set: {exc}") from exc
