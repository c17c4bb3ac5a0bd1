"""A task process as the worker sees it: start it, hand it attempts one at a time, follow its progress.

The process is forked by the worker's zygote (:mod:`dynamr.mapreduce.zygote`), or else started as
``python -m dynamr.mapreduce.child``, in a session of its own (so a kill reaches everything
user code started), with the cluster secret in its environment (never in a spec). Specs go to its stdin
as typed records (:class:`~dynamr.rpc.messages.TaskSpec`, each a 4-byte length and msgpack); its stdout
brings back progress frames and one report frame per attempt. User code's prints go to a private output
file (see :mod:`dynamr.mapreduce.taskoutput`), read back when the process dies without a report or is
killed; its stderr (anything written before the process set that up) is drained into a bounded tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Protocol

import msgpack

from dynamr.errors import ProtocolError
from dynamr.mapreduce import containment
from dynamr.mapreduce.taskoutput import OUTPUT_ENV, make_output_file, read_output, remove_output_file
from dynamr.mapreduce.zygote import ForkServer
from dynamr.rpc.codec import SPEC_HEADER, build_record, pack_record
from dynamr.rpc.messages import AttemptReport, TaskSpec

#: the kinds of frame a task process writes (see dynamr.mapreduce.child)
PROGRESS, RESULT = 0, 1

#: bytes of stderr kept for a failure report
STDERR_TAIL = 4000
#: largest frame the process may write (a report with a long traceback)
FRAME_LIMIT = 16 << 20

ProgressCallback = Callable[[list[int]], None]


class Process(Protocol):
    """What the worker uses of a process: asyncio's, or one the zygote forked."""

    pid: int
    stdin: asyncio.StreamWriter | None
    stdout: asyncio.StreamReader | None
    stderr: asyncio.StreamReader | None

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


class TaskProcess:
    def __init__(self, proc: Process, output_path: str) -> None:
        self.proc = proc
        self.output_path = output_path
        #: the job whose attempts this process runs (None until its first attempt)
        self.job: str | None = None
        self.served = 0
        self.idle_since = time.monotonic()
        self._stderr = bytearray()
        self._drain = asyncio.create_task(self._drain_stderr())

    @classmethod
    async def start(cls, secret: bytes, owner: str, number: int, scratch_dir: str | None = None,
                    forks: ForkServer | None = None) -> TaskProcess:
        """Start task process ``number`` of ``owner``, carrying their mark (see :mod:`dynamr.mapreduce.containment`),
        its output file in ``scratch_dir`` (the system's temporary directory by default): forked by
        ``forks`` when given, else (or if the zygote fails) as a new interpreter."""
        output_path = make_output_file(scratch_dir)
        added = {"DYNAMR_SECRET": secret.decode(), OUTPUT_ENV: output_path,
                 containment.OWNER: containment.mark_for(owner, number)}
        proc: Process
        try:
            if forks is not None:
                try:
                    return cls(await forks.spawn(added), output_path)
                except OSError as exc:
                    forks.failed(exc)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "dynamr.mapreduce.child", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **added},
                start_new_session=True, limit=FRAME_LIMIT)
        except BaseException:
            remove_output_file(output_path)
            raise
        return cls(proc, output_path)

    def output(self) -> str:
        """What the current (or last) attempt printed so far."""
        return read_output(self.output_path)

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        with contextlib.suppress(Exception):
            while data := await self.proc.stderr.read(65536):
                self._stderr += data
                del self._stderr[:-STDERR_TAIL]

    async def run(self, spec: TaskSpec, on_progress: ProgressCallback) -> tuple[AttemptReport, bool] | None:
        """Run one attempt: its report and whether the process retires after it, or None when the process
        ended without a report (see :meth:`failure`)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stderr.clear()
        self.job = spec.job
        self.served += 1
        try:
            payload = pack_record(spec)
            self.proc.stdin.write(SPEC_HEADER.pack(len(payload)) + payload)
            await self.proc.stdin.drain()
            while True:
                (size,) = SPEC_HEADER.unpack(await self.proc.stdout.readexactly(SPEC_HEADER.size))
                if size > FRAME_LIMIT:
                    self.kill()
                    await self.proc.wait()
                    return AttemptReport(attempt=spec.attempt, ok=False, error=(
                        f"the task process sent a report of {size} bytes, over the {FRAME_LIMIT >> 20} MiB limit "
                        "(a huge traceback or counter name?); the attempt was stopped")), True
                frame = msgpack.unpackb(await self.proc.stdout.readexactly(size), use_list=False, raw=False)
                if frame[0] == PROGRESS:
                    on_progress([int(x) for x in frame[1:4]])
                    continue
                self.idle_since = time.monotonic()
                return build_record(AttemptReport, frame[1]), bool(frame[2])
        except (OSError, asyncio.IncompleteReadError):
            pass  # the process is gone (its pipes broke)
        except (ValueError, TypeError, IndexError, ProtocolError) as exc:
            self.kill()
            await self.proc.wait()
            failed = AttemptReport(attempt=spec.attempt, ok=False,
                                   error=f"the task process sent a malformed frame ({exc}); the attempt was stopped")
            return failed, True
        await self.proc.wait()
        return None

    async def failure(self, attempt: str) -> AttemptReport:
        """What to report for an attempt whose process ended without a report."""
        await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._drain, 2.0)
        return AttemptReport(attempt=attempt, ok=False,
                             error=f"task process exited with code {self.proc.returncode} without a result",
                             traceback=self._stderr.decode(errors="replace"), output=self.output())

    def kill(self) -> None:
        """SIGKILL the process's whole group (user code and anything it started)."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def kill_group(self) -> None:
        """SIGKILL whatever is left of the process's group once it has exited (what user code started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def retire(self) -> None:
        """Let an idle process go: the end of its stdin makes it exit."""
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()

    async def wait(self) -> None:
        """Wait for the process to end, then remove its output file."""
        with contextlib.suppress(Exception):
            await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._drain, 2.0)
        remove_output_file(self.output_path)
