"""Intermediate data in the replicated store: map outputs by attempt, and write-once commit records.

Each map attempt stores every partition of its output as an object (chunks plus a manifest, see
:meth:`FileSystem.put_object`) under a key naming the job, the attempt and the partition, so attempts
never overwrite each other. When an attempt succeeds, the coordinator writes the task's *commit record*,
naming the winning attempt and which partitions it produced; the record is written once, and a reader only
ever follows commit records, so keys are never listed and a late duplicate attempt is simply not read.
Its objects, and every object of a job once it ends, are deleted by :func:`delete_outputs`.

An attempt whose output is not partitioned (a reduce, or a map of a step without reducers) writes it whole
as one object keyed by the attempt too (:func:`attempt_key`): the next step's maps read the committed
attempt's, and a part file of the job's output is *published* by the coordinator (:func:`publish`) once the
task's commit record names the attempt. So no attempt ever writes where another's output is read: a backup
that lost, or an attempt cut off from the coordinator that writes after its job was cleaned up (and its
output path perhaps removed and used again), writes only its own object.

Because outputs live in the store (replicated N times) rather than on the mapper's disk, a node that dies
after its maps committed costs no re-execution (seed 003). Only when every replica of a committed output
is lost does its task run again: the reader reports it, and the coordinator voids the commit record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import dataclass

import msgpack

from dynamr.errors import BadRequestError
from dynamr.files.client import OBJECT_PREFIX, FileSystem
from dynamr.store.client import AsyncClient

PREFIX = "mr:"
#: where a job's objects live (map outputs, a step's output for the next step): under the store's object prefix
OBJECTS = OBJECT_PREFIX.decode() + PREFIX


def output_key(job: str, attempt: str, partition: int) -> bytes:
    return f"{OBJECTS}{job}/out/{attempt}/{partition}".encode()


def attempt_key(job: str, attempt: str) -> str:
    """The object holding an attempt's whole (unpartitioned) output: a step's output for the next step, or
    a part file of the job's output until it is published."""
    return f"{OBJECTS}{job}/whole/{attempt}"


def job_objects(job: str) -> bytes:
    """The prefix of every object of a job."""
    return f"{OBJECTS}{job}/".encode()


def commit_key(job: str, task_id: str) -> bytes:
    return f"{PREFIX}{job}/commit/{task_id}".encode()


def object_owner(key: bytes) -> tuple[str, str] | None:
    """The (job, attempt) whose output an object key holds (see :func:`output_key`, :func:`attempt_key`);
    None for any other key."""
    text = key.decode(errors="replace")
    if not text.startswith(OBJECTS):
        return None
    job, _, rest = text[len(OBJECTS):].partition("/")
    kind, _, attempt = rest.partition("/")
    if kind == "out":
        attempt = attempt.rpartition("/")[0]
    if kind not in ("out", "whole") or not attempt.startswith(f"{job}/") or "#" not in attempt:
        return None
    return job, attempt


def commit_owner(key: bytes) -> tuple[str, str] | None:
    """The (job, task) whose commit record a key holds (see :func:`commit_key`); None for any other key."""
    text = key.decode(errors="replace")
    job, sep, task = text[len(PREFIX):].partition("/commit/")
    if not text.startswith(PREFIX) or not sep or not task.startswith(f"{job}/"):
        return None
    return job, task


@dataclass(frozen=True, slots=True)
class Commit:
    task_id: str
    attempt: str
    #: partitions the attempt produced (empty partitions have no object)
    partitions: tuple[int, ...]
    #: the attempt's counters, (group, name, value): kept with the commit so a restarted coordinator has them
    counters: tuple[tuple[str, str, int], ...] = ()

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb([self.task_id, self.attempt, list(self.partitions),
                                       [list(c) for c in self.counters]], use_bin_type=True)
        return packed

    @classmethod
    def decode(cls, data: bytes) -> Commit:
        try:
            task_id, attempt, partitions, *rest = msgpack.unpackb(data, raw=False)
            counters = tuple((str(g), str(n), int(v)) for g, n, v in (rest[0] if rest else ()))
            return cls(str(task_id), str(attempt), tuple(int(p) for p in partitions), counters)
        except (ValueError, TypeError) as exc:
            raise BadRequestError(f"malformed commit record: {exc}") from exc


async def store_partitions(fs: FileSystem, job: str, attempt: str,
                           partitions: Iterable[tuple[int, AsyncIterator[bytes]]]) -> int:
    """Store the partitions of an attempt's output (one upload session for all); returns their bytes."""
    size = 0
    async with fs.uploads.session():
        for partition, blocks in partitions:
            size += (await fs.put_object(output_key(job, attempt, partition), blocks)).size
    return size


async def commit(client: AsyncClient, job: str, record: Commit, *, superseded: Collection[str] = ()) -> Commit:
    """Write a task's commit record unless one exists; returns the record in force (first commit wins).
    A record naming a ``superseded`` attempt (one whose output was lost) does not count: it is replaced."""
    key = commit_key(job, record.task_id)
    current = await client.get(key)
    in_force = [c for c in (Commit.decode(v) for v in current.values) if c.attempt not in superseded]
    if in_force:
        return min(in_force, key=lambda c: c.attempt)
    await client.put(key, record.encode(), context=current.context)
    return record


async def committed(client: AsyncClient, job: str, task_id: str) -> Commit | None:
    result = await client.get(commit_key(job, task_id))
    if not result.values:
        return None
    return min((Commit.decode(v) for v in result.values), key=lambda c: c.attempt)


async def read_partition(fs: FileSystem, job: str, record: Commit, partition: int) -> AsyncIterator[bytes]:
    """The bytes of one partition of a committed map output (nothing when the attempt produced none)."""
    if partition not in record.partitions:
        return
    async for piece in fs.read_object(output_key(job, record.attempt, partition)):
        yield piece


async def delete_outputs(fs: FileSystem, job: str, attempt: str, partitions: Iterable[int]) -> int:
    """Delete an attempt's output objects: the ``partitions`` it may have written, and its whole output
    (their chunks are freed by garbage collection)."""
    deleted = 0
    for partition in partitions:
        deleted += await fs.delete_object(output_key(job, attempt, partition))
    deleted += await fs.delete_object(attempt_key(job, attempt).encode())
    return deleted


async def publish(fs: FileSystem, job: str, attempt: str, path: str) -> None:
    """Make the whole output of the committed ``attempt`` the file at ``path`` (idempotent; nothing is
    copied). :class:`NotFoundError` when the attempt's object is gone."""
    await fs.publish_object(attempt_key(job, attempt).encode(), path)


async def delete_commit(client: AsyncClient, job: str, task_id: str, attempt: str = "") -> None:
    """Delete a task's commit record; with ``attempt``, only when the record names it."""
    result = await client.get(commit_key(job, task_id))
    if attempt and not any(Commit.decode(v).attempt == attempt for v in result.values):
        return
    if result.values:
        await client.delete(commit_key(job, task_id), context=result.context)
