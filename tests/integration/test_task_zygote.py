"""Task processes forked from the worker's zygote: they run jobs as exec'd ones do, carry their own owner mark
where /proc shows it, report their exit codes, and die with the zygote, which comes back on the next request."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from dynamr.mapreduce import containment, zygote
from dynamr.mapreduce.taskprocess import FRAME_LIMIT
from tests.helpers import wait_until
from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import alive, store_output, submit, upload, wait_for_job
from tests.mrdata import write_corpus

pytestmark = pytest.mark.skipif(not zygote.SUPPORTED, reason="the zygote is Linux only")

#: each map task names the command line of its task process's parent
PARENTS = '''
import os
from dynamr.mapreduce import MRJob

class Parents(MRJob):
    def mapper_final(self):
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            yield f.read().replace(b"\\0", b" ").decode(), 1
    def mapper(self, key, line):
        return ()
    def reducer(self, parent, counts):
        yield parent, sum(counts)
'''


@pytest.mark.parametrize("forked", [True, False])
def test_jobs_run_in_processes_forked_from_the_zygote_unless_it_is_turned_off(make_cluster: MakeCluster,
                                                                              tmp_path: Path, forked: bool) -> None:
    cluster = make_cluster(1, n=1, r=1, w=1, task_slots=2, task_zygote=forked)
    files = write_corpus(tmp_path / "in", [3000] * 4)
    upload(cluster, files[0].parent)
    job_file = tmp_path / "parents.py"
    job_file.write_text(PARENTS)
    submit(cluster, "parents", job_file, ["/in"], "/out", reducers=1, split_size=4096)
    assert wait_for_job(cluster, "parents", 120).state == "succeeded"
    parents = store_output(cluster, "/out")
    assert sum(parents.values()) == 4  # one per file
    if forked:
        assert all("dynamr.mapreduce.zygote" in p for p in parents), parents
    else:
        assert not any("zygote" in p for p in parents) and all("dynamr node start" in p for p in parents), parents


def _environ_mark(pid: int) -> str | None:
    with open(f"/proc/{pid}/environ", "rb") as f:
        for entry in f.read().split(b"\0"):
            if entry.startswith(containment.OWNER.encode() + b"="):
                return entry.split(b"=", 1)[1].decode()
    return None


def test_a_forked_process_shows_its_own_mark_and_its_exit_code_comes_back(tmp_path: Path) -> None:
    owner = str(tmp_path / "tasks")

    async def scenario() -> None:
        forks = zygote.ForkServer(owner, FRAME_LIMIT)
        try:
            first = await forks.spawn({containment.OWNER: containment.mark_for(owner, 7)})
            second = await forks.spawn({containment.OWNER: containment.mark_for(owner, 12)})
            assert first.pid != second.pid
            # (a process writes its mark as it starts, before it reads its first spec)
            for proc, key in ((first, 7), (second, 12)):
                await asyncio.to_thread(wait_until, lambda p=proc, k=key: _environ_mark(p.pid) == containment.mark_for(
                    owner, k), 30, "the forked process to show its own mark")
            assert first.stdin is not None and second.stdin is not None
            first.stdin.close()  # the end of its specs: a task process exits cleanly
            assert await asyncio.wait_for(first.wait(), 60) == 0
            os.killpg(second.pid, signal.SIGKILL)
            assert await asyncio.wait_for(second.wait(), 60) == -signal.SIGKILL
        finally:
            await forks.close()

    asyncio.run(scenario())


def test_task_processes_die_with_their_zygote_and_a_new_one_serves_the_next_request(tmp_path: Path) -> None:
    owner = str(tmp_path / "tasks")

    async def scenario() -> None:
        forks = zygote.ForkServer(owner, FRAME_LIMIT)
        try:
            running = await forks.spawn({containment.OWNER: containment.mark_for(owner, 1)})
            assert forks._proc is not None
            old_zygote = forks._proc.pid
            os.kill(old_zygote, signal.SIGKILL)
            assert await asyncio.wait_for(running.wait(), 60) == -signal.SIGKILL
            await asyncio.to_thread(wait_until, lambda: not alive(running.pid), 30,
                                    "the orphaned task process to die with its zygote")
            again = await forks.spawn({containment.OWNER: containment.mark_for(owner, 2)})
            assert forks._proc is not None and forks._proc.pid != old_zygote
            await asyncio.to_thread(wait_until, lambda: _environ_mark(again.pid) == containment.mark_for(owner, 2), 30,
                                    "the new zygote's process to show its mark")
        finally:
            await forks.close()
        await asyncio.to_thread(wait_until, lambda: not alive(again.pid), 30, "close to end its processes")

    asyncio.run(scenario())


def _pipes() -> set[int]:
    """This process's descriptors that are pipes."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}").startswith("pipe:"):
                found.add(int(name))
    return found


def _run(loop: str, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``scenario`` under asyncio's own loop or uvloop's (the nodes')."""
    if loop == "uvloop":
        pytest.importorskip("uvloop").run(scenario())
    else:
        asyncio.run(scenario())


async def _pipes_after_one_process(forks: zygote.ForkServer, owner: str) -> set[int]:
    """Fork one process and let it end, then this process's pipes (the zygote's socket is there by then, and
    the loop's own; perhaps that process's, until they close)."""
    warm = await forks.spawn({containment.OWNER: containment.mark_for(owner, 1)})
    assert warm.stdin is not None
    warm.stdin.close()
    await asyncio.wait_for(warm.wait(), 60)
    return _pipes()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_process_that_ended_leaves_no_pipe_open_in_the_worker(tmp_path: Path, loop: str) -> None:
    """Under the nodes' own loop (uvloop) too, which keeps a stream's pipe open at its end unless told."""
    owner = str(tmp_path / "tasks")

    async def scenario() -> None:
        forks = zygote.ForkServer(owner, FRAME_LIMIT)
        try:
            before = await _pipes_after_one_process(forks, owner)
            for number in range(2, 6):  # one ends by itself, one is killed, one each again
                proc = await forks.spawn({containment.OWNER: containment.mark_for(owner, number)})
                assert proc.stdin is not None
                if number % 2:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.stdin.close()
                await asyncio.wait_for(proc.wait(), 60)
            await asyncio.to_thread(wait_until, lambda: _pipes() <= before, 30,
                                    "the worker to close the pipes of the processes that ended")
        finally:
            await forks.close()

    _run(loop, scenario)


def test_a_kill_as_soon_as_a_process_is_forked_reaches_its_group(tmp_path: Path) -> None:
    """The worker learns the pid only once the process is in a session of its own, so killing the group at
    once finds it (a kill lost here left a process running that the worker believed killed)."""
    owner = str(tmp_path / "tasks")

    async def scenario() -> None:
        forks = zygote.ForkServer(owner, FRAME_LIMIT)
        try:
            for number in range(1, 11):
                proc = await forks.spawn({containment.OWNER: containment.mark_for(owner, number)})
                os.killpg(proc.pid, signal.SIGKILL)  # raises ProcessLookupError if the group is not there yet
                assert await asyncio.wait_for(proc.wait(), 60) == -signal.SIGKILL
        finally:
            await forks.close()

    asyncio.run(scenario())


def _marked(mark: str) -> list[int]:
    """The live processes that carry ``mark``."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            with open(f"/proc/{name}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue
            if _environ_mark(int(name)) == mark:
                found.append(int(name))
    return found


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_spawn_cancelled_at_any_point_leaves_no_process_and_no_pipe(tmp_path: Path, loop: str) -> None:
    """The worker cancels spawns when it stops: wherever that lands (asking the zygote, waiting for the
    pid, attaching the pipes), nothing is left that nobody owns."""
    owner = str(tmp_path / "tasks")

    async def scenario() -> None:
        forks = zygote.ForkServer(owner, FRAME_LIMIT)
        try:
            before = await _pipes_after_one_process(forks, owner)
            kept = []
            for steps in range(24):  # cancelled before the zygote answers, or 0, 1, 2, ... loop turns after
                known = set(forks._running)
                spawning = asyncio.create_task(forks.spawn({containment.OWNER: containment.mark_for(owner, 2)}))
                if steps >= 4:
                    deadline = time.monotonic() + 30
                    while set(forks._running) <= known and not spawning.done() and time.monotonic() < deadline:
                        await asyncio.sleep(0)  # (until the zygote's answer with the pid is read)
                for _ in range(max(0, steps - 4)):
                    await asyncio.sleep(0)
                spawning.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    kept.append(await spawning)  # (it finished before the cancel landed)
            for proc in kept:
                assert proc.stdin is not None
                proc.stdin.close()
                await asyncio.wait_for(proc.wait(), 60)
            await asyncio.to_thread(wait_until, lambda: not _marked(containment.mark_for(owner, 2)), 30,
                                    "every forked process to be gone")
            await asyncio.to_thread(wait_until, lambda: _pipes() <= before, 30, "every pipe of theirs to be closed")
        finally:
            await forks.close()

    _run(loop, scenario)
