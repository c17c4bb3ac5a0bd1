"""What the coordinator's shell refuses before a job exists, and how a task process's pipe is guarded."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

import pytest

from dynamr.errors import BadRequestError
from dynamr.mapreduce.coordinator import Coordinator
from dynamr.mapreduce.jobrun import JobPlan, StepPlan
from dynamr.mapreduce.taskprocess import FRAME_LIMIT, TaskProcess
from dynamr.rpc.messages import TaskSpec
from dynamr.store.client import AsyncClient

PLAN = JobPlan(source="/_jobs/j/abc/j.py", source_name="j.py", inputs=(("/in/a", 10),), output="/out",
               steps=(StepPlan(map_only=False, reducers=1),))


def coordinator(tmp_path: Path, local_jobs: bool) -> Coordinator:
    return Coordinator(AsyncClient([("127.0.0.1", 9)], b"s" * 32), data_dir=tmp_path / "coord", local_jobs=local_jobs)


def test_a_plan_cannot_make_the_coordinator_touch_paths_it_does_not_own(tmp_path: Path) -> None:
    remote = coordinator(tmp_path, local_jobs=False)
    with pytest.raises(BadRequestError, match="does not accept local input, output or intermediate paths"):
        remote._check_paths(dataclasses.replace(PLAN, local_output=True, output="/home/someone"))
    with pytest.raises(BadRequestError, match="does not accept local"):
        remote._check_paths(dataclasses.replace(PLAN, local_intermediate=str(tmp_path / "coord" / "x")))
    embedded = coordinator(tmp_path, local_jobs=True)
    with pytest.raises(BadRequestError, match="inside the coordinator's data directory"):
        embedded._check_paths(dataclasses.replace(PLAN, local_intermediate="/etc"))
    with pytest.raises(BadRequestError, match="inside the coordinator's data directory"):
        embedded._check_paths(dataclasses.replace(
            PLAN, local_intermediate=str(tmp_path / "coord" / ".." / "elsewhere")))
    with pytest.raises(BadRequestError, match="absolute, without"):
        embedded._check_paths(dataclasses.replace(PLAN, local_output=True, output="/out/../../etc"))
    with pytest.raises(BadRequestError, match="stored under /_jobs/"):
        remote._check_paths(dataclasses.replace(PLAN, source="/etc/passwd"))
    embedded._check_paths(dataclasses.replace(PLAN, local_intermediate=str((tmp_path / "coord" / "i").resolve()),
                                              local_output=True, output=str(tmp_path / "out")))  # allowed


def test_an_oversized_frame_from_a_task_process_fails_the_attempt_at_once() -> None:
    """Before, a result line over the pipe's limit wedged the attempt until the no-progress timeout."""
    script = ("import struct, sys, time\n"
              "sys.stdin.buffer.read(4)\n"
              f"sys.stdout.buffer.write(struct.pack('>I', {FRAME_LIMIT + 1})); sys.stdout.buffer.flush()\n"
              "time.sleep(600)\n")

    async def go() -> str:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                    start_new_session=True)
        task = TaskProcess(proc, output_path="")
        spec = TaskSpec(job="j", attempt="j/s0-m0#1", kind="map", step=0, source="/_jobs/j/x/j.py",
                        source_name="j.py")
        result = await asyncio.wait_for(task.run(spec, lambda line: None), 60)
        assert result is not None and not task.alive
        report, retiring = result
        assert not report.ok and retiring
        return report.error

    assert "over the 16 MiB limit" in asyncio.run(go())


def test_a_status_request_that_waits_is_answered_when_its_job_ends(tmp_path: Path) -> None:
    """A client following a job holds one status request, answered at the job's end (no polling delay)."""
    from dynamr.mapreduce import protocol as p
    from dynamr.rpc import messages as m

    coord = coordinator(tmp_path, local_jobs=True)
    coord._effects = {}  # only the wake-up is under test, not what ending a job persists
    state = {"j": "running"}
    coord._status = lambda name: m.JobStatusView(name=name, state=state[name])  # type: ignore[method-assign]

    async def go() -> None:
        assert (await coord._on_status(m.JobStatus(name="j"))).status.state == "running"  # no wait: at once
        assert (await coord._on_status(m.JobStatus(name="j", wait=0.05))).status.state == "running"  # waited out
        held = asyncio.ensure_future(coord._on_status(m.JobStatus(name="j", wait=30.0)))
        await asyncio.sleep(0)
        coord.carry_out([p.PersistStarted("other", 1.0)])  # another job's change: the request waits on
        await asyncio.sleep(0)
        assert not held.done()
        state["j"] = "succeeded"
        coord.carry_out([p.PersistFinalized("j", "succeeded", 2.0, m.JobStatusView(name="j", state="succeeded"))])
        reply = await asyncio.wait_for(held, 10.0)  # well before its 30 s
        assert reply.status.state == "succeeded"
        for bad in (-1.0, 31.0, float("nan")):
            with pytest.raises(BadRequestError, match="may wait 0 to 30 seconds"):
                await coord._on_status(m.JobStatus(name="j", wait=bad))

    asyncio.run(go())


def test_a_task_process_whose_output_file_was_removed_exits_and_leaves_no_file(tmp_path: Path) -> None:
    """A worker that stops while a spare is starting removes the spare's output file; the process must not
    make it again (it once did, and a stopped node left the file behind)."""
    import os
    import subprocess

    from dynamr.mapreduce.taskoutput import OUTPUT_ENV

    gone = tmp_path / "dynamr-output-gone.log"
    done = subprocess.run([sys.executable, "-m", "dynamr.mapreduce.child"], env={**os.environ, OUTPUT_ENV: str(gone)},
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert not gone.exists()


def test_a_poll_s_hold_is_checked_and_an_idle_worker_is_told_to_poll_again(tmp_path: Path) -> None:
    from dynamr.rpc import messages as m

    coord = coordinator(tmp_path, local_jobs=True)
    for bad in (-1.0, float("nan"), 31.0):
        with pytest.raises(BadRequestError, match="a poll may be held 0 to 30 seconds"):
            asyncio.run(coord._on_heartbeat(m.WorkerHeartbeat(node_id="n1", free_slots=1, seq=1, hold=bad)))
    first = asyncio.run(coord._on_heartbeat(m.WorkerHeartbeat(node_id="n1", free_slots=1, seq=1, hold=0.05)))
    assert first.again and not first.assignments  # known now: its next poll will be kept
    kept = asyncio.run(coord._on_heartbeat(m.WorkerHeartbeat(node_id="n1", free_slots=1, seq=2, hold=0.05)))
    assert kept.again and not kept.assignments  # kept until the hold ran out, with nothing for it
    busy = asyncio.run(coord._on_heartbeat(m.WorkerHeartbeat(node_id="n1", free_slots=0, seq=3, hold=0.05)))
    assert not busy.again  # no free slot: answered at once, and a heartbeat until the next
