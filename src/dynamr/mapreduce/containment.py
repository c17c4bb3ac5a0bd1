"""Keeping user code contained: the processes a task started, their memory, and what a dead node left.

Every task process leads a process group of its own (and runs in its own session), so everything user code
starts is in that group unless it calls ``setsid``. It also carries an *owner mark* in its environment,
which what it starts inherits: the node's task directory and the process's number. From that:

- :func:`group_members` and :func:`group_rss` find a task's processes and the memory they hold, so the
  worker can stop an attempt the moment its group passes the memory limit;
- :func:`kill_strays` and :func:`kill_marked` with the task process's mark kill what an attempt left
  running once it ended (the task process itself stays, ready for the next attempt), including a process
  that left the group with ``setsid`` but kept its environment;
- :func:`kill_marked` with the worker's mark alone kills every process of its task processes: at start-up
  (what a node killed with -9 left behind) and at stop. A process that both calls ``setsid`` and clears
  its environment escapes; only a cgroup would hold it, and that needs privileges dynamr does not ask for.

Linux only (``/proc``); elsewhere these find nothing and groups are still killed as a whole.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

#: the environment variable that marks a task process and everything it starts
OWNER = "DYNAMR_TASK_OWNER"
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], pgrp is [2])."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir(PROC) if name.isdigit()]
    except OSError:
        return []


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (zombies excluded)."""
    members = []
    for pid in _pids():
        fields = _stat_fields(pid)
        if fields is not None and fields[2] == str(pgid) and fields[0] != "Z":
            members.append(pid)
    return members


def rss(pid: int) -> int:
    """Resident memory of one process in bytes (0 when it is gone)."""
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def group_rss(pgid: int) -> int:
    """Resident memory of a whole process group in bytes."""
    return sum(rss(pid) for pid in group_members(pgid))


def kill_strays(leader: int) -> int:
    """SIGKILL every process of ``leader``'s group but the leader; returns how many were killed."""
    killed = 0
    for pid in group_members(leader):
        if pid != leader:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def _mark_of(pid: int) -> bytes | None:
    try:
        environ = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(OWNER.encode() + b"="):
            return entry[len(OWNER) + 1:]
    return None


def mark_for(owner: str, process: int) -> str:
    """The mark of one task process of ``owner`` (what it starts inherits it)."""
    return f"{owner}#{process}"


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
