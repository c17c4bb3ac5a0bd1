"""Map outputs in the store: per-attempt objects, first commit wins, readers follow commits, cleanup."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest

from dynamr.errors import NotFoundError
from dynamr.files import FileSystem
from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce.runs import decode_run, encode_run
from tests.inprocess import SETTINGS, Cluster

FS_SETTINGS = SETTINGS.replace(max_key_bytes=400, max_value_bytes=64 * 1024)


async def _aiter(blocks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for block in blocks:
        yield block


async def test_attempt_outputs_commit_read_and_cleanup() -> None:
    cluster = Cluster(3, FS_SETTINGS)
    try:
        fs = FileSystem(cluster.client, chunk_size=1024)
        records = [(f"key{i:04d}", i) for i in range(2000)]
        size = await im.store_partitions(fs, "job1", "m0#1", [(0, _aiter(encode_run(records)))])
        assert size > 1024  # several chunks
        await im.store_partitions(fs, "job1", "m0#2", [(0, _aiter(encode_run([("late", 1)])))])
        first = await im.commit(cluster.client, "job1", im.Commit("m0", "m0#1", (0,)))
        second = await im.commit(cluster.client, "job1", im.Commit("m0", "m0#2", (0,)))
        assert first == second == im.Commit("m0", "m0#1", (0,))  # the late attempt does not replace it
        record = await im.committed(cluster.client, "job1", "m0")
        assert record is not None
        blocks = [b async for b in im.read_partition(fs, "job1", record, 0)]
        assert list(decode_run(blocks)) == records
        assert [b async for b in im.read_partition(fs, "job1", record, 3)] == []
        assert await im.delete_outputs(fs, "job1", "m0#2", [0]) == 1
        assert not (await cluster.client.get(im.output_key("job1", "m0#2", 0))).found
        await im.delete_commit(cluster.client, "job1", "m0")
        assert await im.committed(cluster.client, "job1", "m0") is None
        # a record naming an attempt whose output was lost is replaced by the next commit
        await im.commit(cluster.client, "job1", im.Commit("m1", "m1#1", (0,)))
        again = await im.commit(cluster.client, "job1", im.Commit("m1", "m1#5", (0,)), superseded={"m1#1"})
        assert again == im.Commit("m1", "m1#5", (0,))
        assert await im.committed(cluster.client, "job1", "m1") == again
    finally:
        await cluster.stop()


async def test_a_committed_attempts_whole_output_is_published_as_its_part_file_and_a_losers_is_not() -> None:
    cluster = Cluster(3, FS_SETTINGS)
    try:
        fs = FileSystem(cluster.client, chunk_size=1024)
        winner, loser = "job2/s0-r0#1", "job2/s0-r0#2"
        await fs.put_object(im.attempt_key("job2", winner).encode(), _aiter([b"a\t1\n" * 600]))
        await im.publish(fs, "job2", winner, "/out/job2/part-00000")
        assert await fs.read_bytes("/out/job2/part-00000") == b"a\t1\n" * 600
        assert [e.name for e in await fs.ls("/out/job2")] == ["part-00000"]
        first = await fs.stat("/out/job2/part-00000")
        await im.publish(fs, "job2", winner, "/out/job2/part-00000")  # again (a retried commit): unchanged
        assert await fs.stat("/out/job2/part-00000") == first
        # a loser (or an attempt cut off from the coordinator) writes only its own object, late or not
        await fs.put_object(im.attempt_key("job2", loser).encode(), _aiter([b"stale\n"]))
        assert await fs.read_bytes("/out/job2/part-00000") == b"a\t1\n" * 600
        # the objects go with the job; the published file keeps its chunks
        assert await im.delete_outputs(fs, "job2", winner, ()) == 1
        assert await im.delete_outputs(fs, "job2", loser, ()) == 1
        assert await fs.read_bytes("/out/job2/part-00000") == b"a\t1\n" * 600
        # the output directory removed by its user is made again by the next publication
        await fs.rm("/out/job2", recursive=True)
        await fs.put_object(im.attempt_key("job3", "job3/s0-r0#1").encode(), _aiter([b"b\t2\n"]))
        await im.publish(fs, "job3", "job3/s0-r0#1", "/out/job2/part-00000")
        assert [e.name for e in await fs.ls("/out/job2")] == ["part-00000"]
        with pytest.raises(NotFoundError):  # its object is gone
            await im.publish(fs, "job2", winner, "/out/job2/part-00001")
    finally:
        await cluster.stop()
