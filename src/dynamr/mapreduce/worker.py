"""A node's task slots: pull work from the coordinator and run each attempt in a child process.

Every ``interval`` seconds (and at once when an attempt ends) the worker sends a heartbeat with its free
slots and the attempts that ended; the reply holds new task specs, each started as
``python -m dynamr.mapreduce.child`` with the spec on stdin and the cluster secret in its environment
(never in the spec). A child's last stdout line is its JSON result; a child that dies without one is
reported as failed with its stderr. Kills named by the coordinator end the child's whole process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from typing import Any

from dynamr.errors import DynamrError
from dynamr.rpc import messages as m
from dynamr.rpc.transport import Address, Transport

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, node_id: str, coordinator: Address, transport: Transport, *, slots: int,
                 seeds: list[Address], secret: bytes, interval: float = 0.5, scratch_dir: str | None = None) -> None:
        self.node_id = node_id
        self.coordinator = coordinator
        self.transport = transport
        self.slots = max(1, slots)
        self.seeds = seeds
        self.secret = secret
        self.interval = interval
        self.scratch_dir = scratch_dir
        self.running: dict[str, asyncio.subprocess.Process] = {}
        #: children started ahead of time, imports done, waiting for a spec on stdin
        self._spares: list[asyncio.subprocess.Process] = []
        self._reports: list[dict[str, Any]] = []
        #: attempts the coordinator wants killed that had not started here yet
        self._doomed: set[str] = set()
        self._killed: set[str] = set()
        self._wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.interval)
            self._wakeup.clear()
            reports, self._reports = self._reports, []
            try:
                reply = await self.transport.call(self.coordinator, m.WorkerHeartbeat(
                    node_id=self.node_id, free_slots=self.slots - len(self.running), reports=json.dumps(reports),
                    running=tuple(self.running)), 5.0)
            except DynamrError as exc:
                self._reports = reports + self._reports  # resend them next time
                log.debug("heartbeat to the coordinator failed: %s", exc)
                continue
            assert isinstance(reply, m.WorkerHeartbeatReply)
            for attempt in reply.kills:
                self.kill(attempt)
            for spec_text in reply.assignments:
                spec = json.loads(spec_text)
                task = asyncio.create_task(self._run_attempt(spec))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _start_child(self) -> asyncio.subprocess.Process:
        env = {**os.environ, "DYNAMR_SECRET": self.secret.decode()}
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dynamr.mapreduce.child", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)

    async def _child(self) -> asyncio.subprocess.Process:
        """A warm child if one is waiting, else a new one; a replacement is started in the background."""
        while self._spares:
            proc = self._spares.pop()
            if proc.returncode is None:
                break
        else:
            proc = await self._start_child()
        task = asyncio.create_task(self._add_spare())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return proc

    async def _add_spare(self) -> None:
        if len(self._spares) < self.slots:
            with contextlib.suppress(OSError):
                self._spares.append(await self._start_child())

    async def _run_attempt(self, spec: dict[str, Any]) -> None:
        attempt = spec["attempt"]
        spec = {**spec, "seeds": [list(s) for s in self.seeds], "scratch_dir": self.scratch_dir}
        try:
            proc = await self._child()
        except OSError as exc:
            self._report(attempt, False, {"error": f"could not start the task process: {exc}"})
            return
        self.running[attempt] = proc
        if attempt in self._doomed:
            self._doomed.discard(attempt)
            self.kill(attempt)
        try:
            stdout, stderr = await proc.communicate(json.dumps(spec).encode())
        finally:
            self.running.pop(attempt, None)
        lines = stdout.decode(errors="replace").strip().splitlines()
        try:
            result = json.loads(lines[-1]) if lines else None
        except ValueError:
            result = None
        if attempt in self._killed:
            self._killed.discard(attempt)
            result = {"ok": False, "error": "killed at the coordinator's request"}
        elif not isinstance(result, dict):
            tail = stderr.decode(errors="replace")[-2000:]
            result = {"ok": False, "error": f"task process exited with code {proc.returncode} without a result",
                      "traceback": tail}
        self._report(attempt, bool(result.get("ok")), result)

    def _report(self, attempt: str, ok: bool, result: dict[str, Any]) -> None:
        self._reports.append({"attempt": attempt, "ok": ok, "result": result})
        self._wakeup.set()

    def kill(self, attempt: str) -> None:
        """SIGKILL the attempt's whole process group (user code and anything it started)."""
        proc = self.running.get(attempt)
        if proc is None:
            self._doomed.add(attempt)
        elif proc.returncode is None:
            self._killed.add(attempt)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    async def stop(self) -> None:
        for attempt in list(self.running):
            self.kill(attempt)
        for proc in self._spares:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self._spares:
            with contextlib.suppress(Exception):
                await proc.wait()
        self._spares.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
