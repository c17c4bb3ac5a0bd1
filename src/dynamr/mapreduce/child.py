"""Task attempts in a task process: ``python -m dynamr.mapreduce.child``, typed specs on stdin.

Each spec is a :class:`~dynamr.rpc.messages.TaskSpec`, framed as a 4-byte big-endian length and msgpack.

User code runs here, never in the node, so an infinite loop or a crash costs one killable process. A
process runs the attempts its worker sends it one after the other (all of one job: the worker keeps a
process to one job), keeping its store client and the job's loaded code between them, and exits at the end
of stdin, after a failed attempt, after ``max_tasks`` attempts or once its memory has grown past
``max_rss``. It talks to the store through a blocking :class:`~dynamr.store.client.Client` (its event loop
runs on a background thread while user code runs on the main one). What an attempt does, map or reduce,
is :mod:`dynamr.mapreduce.taskrun`'s; this module is the process around it.

Stdout carries frames for the worker only (user code's prints go to stderr), each a 4-byte length and
msgpack: ``[0, bytes, total, ticks]`` every second while an attempt runs, then ``[1, report, retiring]``,
the attempt's :class:`~dynamr.rpc.messages.AttemptReport` (partitions and counters, or the error, the
user's traceback and its cause) and whether the process exits after it.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import os
import resource
import signal
import sys
import threading
from typing import Any

from dynamr.errors import (
    InputLostError,
)
from dynamr.mapreduce.runs import IncomparableKeys, total_order_in_use, use_total_order
from dynamr.mapreduce.taskoutput import OUTPUT_ENV, read_output
from dynamr.mapreduce.taskrun import STORE_OUTAGES, Session, TaskRun, user_traceback
from dynamr.rpc.codec import SPEC_HEADER, pack_frame, record_values, unpack_record
from dynamr.rpc.messages import AttemptReport, TaskSpec

#: the kinds of frame a task process writes on its stdout
PROGRESS, RESULT = 0, 1
#: seconds between progress lines
PROGRESS_EVERY = 1.0


def die_with_parent() -> None:
    """Linux: be SIGKILLed when the node process that started this task dies, so a crashed node leaves no
    user code running (the task runs in its own session, so signals to the node's group do not reach it)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


class Channel:
    """The worker's channel: specs in on the process's original stdin, progress and results out on its
    original stdout (the latter shared by the progress thread and the task). User code gets neither: its
    stdin is empty and its prints, and those of anything it starts, go to the output file the worker made
    (``DYNAMR_TASK_OUTPUT``; stderr without one), emptied before each attempt and kept in its report."""

    def __init__(self) -> None:
        self._in = os.fdopen(os.dup(0), "rb")
        self._out = os.fdopen(os.dup(1), "wb")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        self.output_path = os.environ.get(OUTPUT_ENV, "")
        if self.output_path:
            try:  # made by the worker: never created here, so a process it gave up on leaves no file behind
                fd = os.open(self.output_path, os.O_WRONLY | os.O_APPEND)
            except FileNotFoundError:
                raise SystemExit(0) from None  # the worker stopped starting this process (it is stopping)
            os.dup2(fd, 2)
            os.close(fd)
        os.dup2(2, 1)
        self._lock = threading.Lock()

    def begin_attempt(self) -> None:
        """Empty the output file: what it holds from now on is this attempt's."""
        if self.output_path:
            _flush_std()
            os.ftruncate(2, 0)

    def attempt_output(self) -> str:
        """What the attempt printed (its start and its end, when it printed more than the report keeps)."""
        if not self.output_path:
            return ""
        _flush_std()
        return read_output(self.output_path)

    def receive(self) -> TaskSpec | None:
        """The next spec, or None at the end of stdin (the worker let this process go)."""
        header = self._in.read(SPEC_HEADER.size)
        if len(header) < SPEC_HEADER.size:
            return None
        (size,) = SPEC_HEADER.unpack(header)
        payload = self._in.read(size)
        if len(payload) < size:
            return None
        return unpack_record(TaskSpec, payload)

    def send(self, frame: list[Any]) -> None:
        data = pack_frame(frame)
        with self._lock:
            self._out.write(data)
            self._out.flush()

    def send_progress(self, line: list[int]) -> None:
        self.send([PROGRESS, *line])

    def send_result(self, report: AttemptReport, retiring: bool) -> None:
        self.send([RESULT, record_values(report), retiring])


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def report_progress(channel: Channel, current: list[TaskRun], stop: threading.Event) -> None:
    while not stop.wait(PROGRESS_EVERY):
        try:
            channel.send_progress(current[0].progress_line())
        except (OSError, ValueError, IndexError):
            return


def run_one(spec: TaskSpec, session: Session, channel: Channel) -> AttemptReport:
    task = None
    stop = threading.Event()
    current: list[TaskRun] = []
    use_total_order(False)
    try:
        task = TaskRun(spec, session)
        current.append(task)
        threading.Thread(target=report_progress, args=(channel, current, stop), daemon=True).start()
        try:
            partitions = task.run()
        except IncomparableKeys:  # keys Python cannot compare (None, mixed types): start over in total order
            if total_order_in_use():
                raise
            use_total_order()
            task.close()
            task = current[0] = TaskRun(spec, session)
            partitions = task.run()
        assert task.job is not None
        counters = tuple((group, name, value) for (group, name), value in task.job.counters().items())
        return AttemptReport(attempt=spec.attempt, ok=True, partitions=partitions, counters=counters)
    except BaseException as exc:
        lost = exc if isinstance(exc, InputLostError) else None
        bad = getattr(exc, "dynamr_bad_record", None)
        return AttemptReport(
            attempt=spec.attempt, ok=False, error=f"{type(exc).__name__}: {exc}", traceback=user_traceback(exc),
            # dynamr's own reads or writes that could not reach the store are not the task's fault
            cause="input_lost" if lost else "store" if isinstance(exc, STORE_OUTAGES) else "",
            lost_task=lost.task if lost else "", lost_attempt=lost.attempt if lost else "",
            bad_record=None if bad is None else str(bad), input=task.reading if task is not None else None)
    finally:
        stop.set()
        if task is not None:
            task.close()


def rss_bytes() -> int:
    """Peak resident memory of this process (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def collect_garbage_less() -> None:
    """A task process allocates millions of short-lived containers (a list per line from ``re.findall``,
    a tuple per record), and Python's cycle collector runs every 700 of them by default, each time
    looking at every young object. Everything imported so far goes to the permanent generation (never
    looked at again), and young objects are collected every 20,000 allocations: 2.3% fewer instructions
    in an in-mapper word count's map task of 16 MB, 0.7% in the classic one, nothing measurable at 64 MB
    (cachegrind, bench/RESULTS.md): a cost per task more than per byte. Cyclic garbage lives a little
    longer; memory stays bounded (and is watched: ``task_memory_limit``)."""
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def main() -> int:
    die_with_parent()
    collect_garbage_less()
    user_umask = os.environ.get("DYNAMR_USER_UMASK", "")
    if user_umask:  # the node keeps its own files private; what the job writes gets the user's umask
        os.umask(int(user_umask, 8))
    channel = Channel()
    session = Session()
    served = 0
    ok = True
    try:
        while (spec := channel.receive()) is not None:
            channel.begin_attempt()
            report = run_one(spec, session, channel)
            if output := channel.attempt_output():
                report = dataclasses.replace(report, output=output)
            served += 1
            ok = report.ok
            retiring = not ok or served >= spec.max_tasks or rss_bytes() > spec.max_rss
            channel.send_result(report, retiring)
            if retiring:
                break
    finally:
        session.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
