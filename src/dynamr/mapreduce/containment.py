"""Keeping user code contained: the processes a task started, their memory, and what a dead node left.

Every task process leads a process group of its own (and runs in its own session), so everything user code
starts is in that group unless it calls ``setsid``. It also carries an *owner mark* in its environment,
which what it starts inherits: the node's task directory and the process's number. From that:

- :func:`groups_rss` finds the memory each task's processes hold, so the worker can stop an attempt
  the moment its group passes the memory limit;
- :func:`kill_leftovers` kills what an attempt left running once it ended (the task process itself stays,
  ready for the next attempt): its group, and a process that left the group with ``setsid`` but kept its
  environment. It runs after every attempt, before the attempt is reported, so it reads ``/proc`` in one
  pass with plain ``os`` calls and reads the environment only of processes younger than the task process
  (only they can descend from it);
- :func:`kill_marked` with the worker's mark alone kills every process of its task processes: at start-up
  (what a node killed with -9 left behind) and at stop. A process that both calls ``setsid`` and clears
  its environment escapes; only a cgroup would hold it, and that needs privileges dynamr does not ask for.

Linux only (``/proc``); elsewhere these find nothing and groups are still killed as a whole.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Collection
from pathlib import Path

#: the environment variable that marks a task process and everything it starts
OWNER = "DYNAMR_TASK_OWNER"
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
PROC = Path("/proc")


def _read(path: str) -> bytes | None:
    """A small /proc file's bytes (None when it is gone or not ours to read)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], pgrp is [2], start time is [19])."""
    data = _read(f"/proc/{pid}/stat")
    if data is None:
        return None
    return data.rsplit(b")", 1)[1].split()


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir(PROC) if name.isdigit()]
    except OSError:
        return []


def groups_rss(pgids: Collection[int]) -> dict[int, int]:
    """Resident memory in bytes of each of the process groups ``pgids`` (0 for a group with no live
    process), in one pass over /proc reading each process's ``stat`` once (it holds both the group and
    the resident pages): the worker checks every running attempt's group every few hundred ms."""
    used = dict.fromkeys(pgids, 0)
    groups = {str(pgid).encode(): pgid for pgid in pgids}
    if not groups:
        return used
    for pid in _pids():
        fields = _stat_fields(pid)
        if fields is None or len(fields) <= 21 or fields[0] == b"Z":
            continue
        pgid = groups.get(fields[2])
        if pgid is not None:
            used[pgid] += int(fields[21]) * PAGE
    return used


def _mark_of(pid: int) -> bytes | None:
    environ = _read(f"/proc/{pid}/environ")
    if environ is None:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(OWNER.encode() + b"="):
            return entry[len(OWNER) + 1:]
    return None


def mark_for(owner: str, process: int) -> str:
    """The mark of one task process of ``owner`` (what it starts inherits it)."""
    return f"{owner}#{process}"


def kill_leftovers(leader: int, owner: str, process: int) -> int:
    """After an attempt: SIGKILL every process of task process ``leader``'s group but itself, and every
    younger process marked as started by it (task process number ``process`` of ``owner``); returns how
    many were killed. One pass over /proc."""
    me = os.getpid()
    fields = _stat_fields(leader)
    born = int(fields[19]) if fields is not None and len(fields) > 19 else 0
    group = str(leader).encode()
    wanted = mark_for(owner, process).encode()
    killed = 0
    for pid in _pids():
        if pid in (me, leader):
            continue
        stat = _stat_fields(pid)
        if stat is None or len(stat) <= 19 or stat[0] == b"Z":
            continue
        if stat[2] != group and (int(stat[19]) < born or _mark_of(pid) != wanted):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def kill_marked(owner: str, process: int | None = None, *, spare: int = 0) -> int:
    """SIGKILL every process (of this user) marked by ``owner``, or only by its task process ``process``,
    except ``spare``; returns how many were killed."""
    wanted = mark_for(owner, process).encode() if process is not None else None
    prefix = f"{owner}#".encode()
    me = os.getpid()
    killed = 0
    for pid in _pids():
        if pid in (me, spare):
            continue
        mark = _mark_of(pid)
        if mark is None or (mark != wanted if wanted is not None else not mark.startswith(prefix)):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed
