"""A file's manifest: its size, chunk size, and ordered chunks (id, length); pure encoding and arithmetic.

Chunk ids are content addresses (xxh3-128 of the bytes) and double as checksums. Concurrent writes of one
path leave sibling manifests; :func:`resolve` picks the newest deterministically (last writer wins), which
is what a file system user expects from two uploads of the same name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgpack

from dynamr.errors import BadRequestError

DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Manifest:
    size: int
    chunk_size: int
    chunks: tuple[tuple[bytes, int], ...]
    mtime: float

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb({"v": 1, "size": self.size, "chunk_size": self.chunk_size,
                                       "chunks": [list(c) for c in self.chunks], "mtime": self.mtime},
                                      use_bin_type=True)
        return packed

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        try:
            raw = msgpack.unpackb(data, raw=False)
            return cls(size=int(raw["size"]), chunk_size=int(raw["chunk_size"]),
                       chunks=tuple((bytes(c[0]), int(c[1])) for c in raw["chunks"]), mtime=float(raw["mtime"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRequestError(f"malformed file manifest: {exc}") from exc

    def spans(self, offset: int, length: int) -> list[tuple[int, bytes, int, int, int]]:
        """Pieces covering [offset, offset+length): (chunk index, chunk id, offset in chunk, bytes, file offset)."""
        end = min(self.size, offset + length) if length >= 0 else self.size
        out = []
        position = 0
        for index, (cid, size) in enumerate(self.chunks):
            chunk_end = position + size
            if chunk_end > offset and position < end:
                start = max(offset, position)
                stop = min(end, chunk_end)
                out.append((index, cid, start - position, stop - start, start))
            if chunk_end >= end:
                break
            position = chunk_end
        return out


def resolve(values: Iterable[bytes]) -> Manifest | None:
    manifests = [Manifest.decode(v) for v in values]
    if not manifests:
        return None
    return max(manifests, key=lambda mf: (mf.mtime, mf.size, mf.chunks))
