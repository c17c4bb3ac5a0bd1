"""Compressed files: inputs known by their names and read decompressed; part files written compressed.

A data engineer's logs and exports are often compressed; Hadoop, mrjob, Dask and Spark all read them as
they are. So does dynamr: an input whose name ends in ``.gz``, ``.bz2`` or ``.xz`` is decompressed as it is
read by the line formats (``text``, ``bytes``, ``json``; ``whole_file`` gives the bytes as stored). None of
these formats can be cut at an arbitrary byte (a stream only decodes from its start), so such a file is one
split, read whole by one task: Hadoop's rule for gzip. Concatenated streams (``cat a.gz b.gz``, bgzip,
pbzip2) are read to the end, and record offsets count uncompressed bytes. Sizes, progress and
``map input bytes`` count the bytes as stored.

A file that is not what its name says, or ends early, fails its task with one line naming the file.

A job's part files are compressed when the job says ``OUTPUT_COMPRESSION = "gzip"`` (or "bzip2", "xz"),
or ``dynamr run --compress-output gzip``: each part gets the codec's ending (``part-00000.gz``), so
another job reads it back as it is. Records formats are not compressed (dynamr's own msgpack stream).

Decompression runs in C (``zlib``, ``bz2``, ``lzma`` through the standard library's file objects) a
megabyte at a time; the source is read in order from the start.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

#: file name endings -> the codec they stand for
SUFFIXES = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz"}
#: the codecs, by name
CODECS = tuple(SUFFIXES.values())
#: how many times its stored bytes a compressed file's work is taken to be (text compresses 3 to 10 times;
#: the low end, so a compressed file is queued before plain splits of its size and not taken for slow)
EXPANSION = 4
#: uncompressed bytes handed out at a time
BLOCK = 1 << 20

_OPENERS: dict[str, Callable[[io.BufferedReader], io.BufferedIOBase]] = {
    "gzip": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    "bzip2": lambda raw: bz2.BZ2File(raw, mode="rb"),
    "xz": lambda raw: lzma.LZMAFile(raw, mode="rb"),  # noqa: SIM115 (closed by Decompressed)
}
#: what the decompressors raise for data that is not of their format, or ends early
_BAD = (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)


class Source(Protocol):
    def read(self, offset: int, length: int) -> Iterator[bytes]: ...


def work_of(path: str, length: int) -> int:
    """The work of reading ``length`` stored bytes of a file, in plain bytes (an estimate for compressed ones)."""
    return length * EXPANSION if codec_of(path) is not None else length


def codec_of(path: str) -> str | None:
    """The codec a file's name says it is compressed with, or None."""
    dot = path.rfind(".")
    return SUFFIXES.get(path[dot:].lower()) if dot >= 0 else None


class CompressedInputError(ValueError):
    """A compressed input that cannot be decompressed (a user's data error: the task fails with it)."""


class _SourceFailed(Exception):
    """What reading the compressed bytes raised, carried through the decompressor unchanged."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _Pieces(io.RawIOBase):
    """A readable file over an iterator of byte blocks (what a source yields)."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            try:
                block = next(self._blocks, None)
            except Exception as exc:  # the source's own failure (a store outage, a disk error): not the data's
                raise _SourceFailed(exc) from exc
            if block is None:
                return 0
            self._rest = memoryview(block)
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


class Decompressed:
    """A source of the uncompressed bytes of a whole compressed file (``size`` bytes as stored).

    Reads are expected in order (a split's reader reads from 0 to the end); one that goes back starts
    the stream again.
    """

    def __init__(self, source: Source, codec: str, size: int, path: str, *, truncated_ok: bool = False) -> None:
        self.source, self.codec, self.size, self.path = source, codec, size, path
        #: a file known to be cut short (a sample of its first bytes): its end is not an error
        self.truncated_ok = truncated_ok
        self._file: io.BufferedIOBase | None = None
        self._position = 0

    def read(self, offset: int, length: int) -> Iterator[bytes]:
        if self._file is None or offset < self._position:
            self._open()
        try:
            assert self._file is not None
            while self._position < offset:  # (a reader never skips ahead; done for completeness)
                skipped = len(self._file.read1(min(BLOCK, offset - self._position)))
                if not skipped:
                    return
                self._position += skipped
            remaining = length
            while remaining > 0:
                data = self._file.read1(min(BLOCK, remaining))  # (what one step gives: a cut-short file's
                #  bytes before its end come out before the error)
                if not data:
                    return
                self._position += len(data)
                remaining -= len(data)
                yield data
        except _SourceFailed as failed:
            raise failed.error from None  # (a store outage stays one: retried, not the task's failure)
        except EOFError as exc:
            if not self.truncated_ok:
                raise CompressedInputError(f"{self.path}: the {self.codec} data ends early (a file cut short?): "
                                           f"{exc}") from None
        except _BAD as exc:
            raise CompressedInputError(f"{self.path}: not valid {self.codec} data ({exc}); a file named *"
                                       f"{_suffix(self.codec)} must be {self.codec}-compressed") from None

    def _open(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = _OPENERS[self.codec](io.BufferedReader(_Pieces(self.source.read(0, self.size)), BLOCK))
        self._position = 0


def unsplittable_note(inputs: Iterable[tuple[str, int]], split_size: int) -> str | None:
    """One line for a user whose compressed inputs hold more than a split each (one task reads each whole,
    so fewer tasks run at once than the sizes would give), or None."""
    big = [(path, size) for path, size in inputs if codec_of(path) is not None and size > split_size]
    if not big:
        return None
    path, size = max(big, key=lambda item: item[1])
    more = f" and {len(big) - 1} more" if len(big) > 1 else ""
    return (f"{path} ({size / 1e6:,.1f} MB){more} is compressed and is read whole by one task (its {codec_of(path)} "
            f"stream cannot be cut); to spread it over more cores, store it uncompressed or as several files")


def compressed_blocks(blocks: Iterable[bytes], codec: str) -> Iterator[bytes]:
    """``blocks`` compressed as one stream of ``codec`` (gzip at zlib's level 6, bzip2 at 9, xz at 6: each
    tool's own default), in the pieces the compressor gives."""
    compressor: Any
    if codec == "gzip":
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # (16+: a gzip header and trailer)
    elif codec == "bzip2":
        compressor = bz2.BZ2Compressor(9)
    elif codec == "xz":
        compressor = lzma.LZMACompressor(lzma.FORMAT_XZ)
    else:
        raise ValueError(f"unknown compression {codec!r} ({', '.join(CODECS)})")
    for block in blocks:
        if out := compressor.compress(block):
            yield out
    yield compressor.flush()


def decompressed(data: bytes, path: str) -> bytes:
    """The whole of a file's bytes, decompressed when its name says it is compressed."""
    codec = codec_of(path)
    if codec is None:
        return data
    try:
        return _WHOLE[codec](data)
    except _BAD as exc:
        raise CompressedInputError(f"{path}: not valid {codec} data, or cut short ({exc})") from None


_WHOLE: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.decompress, "bzip2": bz2.decompress, "xz": lzma.decompress}


def suffix_of(codec: str) -> str:
    """The file name ending of a codec (``.gz`` for gzip); "" for none."""
    return _suffix(codec) if codec else ""


def _suffix(codec: str) -> str:
    return next(s for s, c in SUFFIXES.items() if c == codec)
