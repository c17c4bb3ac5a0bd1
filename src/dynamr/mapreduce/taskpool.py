"""A worker's task processes as a pure state machine: which process runs an attempt, which stay, which go.

The asyncio worker owns the processes themselves (keyed by a number) and carries out what this decides:

- an attempt runs on an *idle* process of its group (its store client and loaded code are warm), else on
  a *spare* (started ahead, imports done, no group yet), else on a spare still starting (it waits for it: a
  process started now would be up later, and import everything again), else on a process started for
  it. A group is a
  job, or the jobs of one program that asked to share processes (the stages of a dataflow run); a process
  never serves two groups (user code of one must not see another's module state);
- spares are started for the *next* job, only on a core no attempt needs, and only once the worker's
  attempts have not changed for ``spare_after`` seconds: up to ``slots`` minus the attempts running (or
  whose process is starting) are then ready or starting. So the worker starts ``slots`` of them when it
  starts, none while every slot is busy (importing would slow the attempts: 0.2 s of CPU each), and none
  in a job's own tails (between its maps and its reduces the slots free for a moment: a spare started
  then imports while the reduces run, and they take the idle processes anyway);
- after an attempt the worker says whether the process may be kept (it ended well, did not ask to retire,
  is alive); at most ``slots`` idle processes are kept (the oldest goes), and one idle for
  ``idle_seconds`` goes;
- killing an attempt also lets its group's idle processes go (user code may have left things behind).

Legal moves are in :data:`MOVES`; a process that is gone is forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dynamr.mapreduce.scheduler import IllegalTransition

#: every legal move of a task process
MOVES: frozenset[tuple[str, str]] = frozenset({
    ("spare", "busy"),  # a spare takes its first attempt
    ("busy", "idle"),  # its attempt ended well: kept for the next attempt of its job
    ("idle", "busy"),  # ...which it takes
})


@dataclass
class Proc:
    key: int
    state: str
    group: str | None = None
    idle_since: float = 0.0


@dataclass(frozen=True, slots=True)
class Use:
    """Run the attempt on process ``key`` (the worker makes sure it is alive, else reports it gone)."""

    key: int


@dataclass(frozen=True, slots=True)
class StartNew:
    """No process is ready: start one for this attempt (then :meth:`ProcessPool.started`)."""


@dataclass(frozen=True, slots=True)
class WaitForSpare:
    """A spare is starting and none is promised yet: wait for it (:meth:`ProcessPool.started` hands it to
    the longest waiting attempt; :meth:`ProcessPool.spare_failed` says when one must ask again)."""


@dataclass(frozen=True, slots=True)
class LetGo:
    """Kill process ``key`` (it is idle or spare: no attempt is lost)."""

    key: int


@dataclass
class ProcessPool:
    slots: int
    idle_seconds: float = 20.0
    spare_after: float = 0.5
    procs: dict[int, Proc] = field(default_factory=dict)
    #: spares being started
    starting: int = 0
    #: processes being started for an attempt (StartNew)
    launching: int = 0
    #: when an attempt last took or left a process (spares wait until that is ``spare_after`` ago)
    changed_at: float = float("-inf")
    #: the groups of attempts waiting for a starting spare, longest waiting first
    waiting: list[str] = field(default_factory=list)

    def _move(self, proc: Proc, new: str) -> None:
        if (proc.state, new) not in MOVES:
            raise IllegalTransition(f"task process {proc.key}: {proc.state} -> {new} is not a legal move")
        proc.state = new

    def acquire(self, group: str, now: float) -> Use | WaitForSpare | StartNew:
        """A process for an attempt of ``group``."""
        self.changed_at = now
        idle = [p for p in self.procs.values() if p.state == "idle" and p.group == group]
        spares = [p for p in self.procs.values() if p.state == "spare"]
        if idle or spares:
            proc = idle[0] if idle else spares[-1]
            self._move(proc, "busy")
            proc.group = group
            return Use(proc.key)
        if self.starting > len(self.waiting):
            self.waiting.append(group)
            return WaitForSpare()
        self.launching += 1
        return StartNew()

    def spares_wanted(self, now: float) -> int:
        """How many spares to start now (they count as starting until :meth:`started` or
        :meth:`spare_failed`)."""
        if now - self.changed_at < self.spare_after:
            return 0
        busy = sum(1 for p in self.procs.values() if p.state == "busy") + self.launching
        ready = sum(1 for p in self.procs.values() if p.state == "spare")
        wanted = max(0, self.slots - busy - ready - self.starting)
        self.starting += wanted
        return wanted

    def started(self, key: int, group: str | None) -> str | None:
        """A process is up: a spare (``group`` None, one of those asked for), or one started for an attempt.
        A spare goes at once to the longest waiting attempt: returns its group (None: it stays a spare)."""
        if group is None:
            self.starting = max(0, self.starting - 1)
            if self.waiting:
                taker = self.waiting.pop(0)
                self.procs[key] = Proc(key, "busy", taker)
                return taker
            self.procs[key] = Proc(key, "spare")
        else:
            self.launching = max(0, self.launching - 1)
            self.procs[key] = Proc(key, "busy", group)
        return None

    def launch_failed(self) -> None:
        """The process started for an attempt (:class:`StartNew`) did not start."""
        self.launching = max(0, self.launching - 1)

    def spare_failed(self) -> bool:
        """A spare did not start. True: the longest waiting attempt has none coming and must ask again."""
        self.starting = max(0, self.starting - 1)
        if len(self.waiting) > self.starting:
            self.waiting.pop(0)
            return True
        return False

    def released(self, key: int, *, keep: bool, now: float) -> list[LetGo]:
        """An attempt on ``key`` ended. Kept: idle (the oldest idle goes past ``slots``); else it is gone."""
        self.changed_at = now
        proc = self.procs.get(key)
        if proc is None:
            return []
        if not keep:
            del self.procs[key]
            return []
        self._move(proc, "idle")
        proc.idle_since = now
        idle = sorted((p for p in self.procs.values() if p.state == "idle"), key=lambda p: p.idle_since)
        return [self._let_go(p) for p in idle[:max(0, len(idle) - self.slots)]]

    def gone(self, key: int) -> None:
        """A process died or was let go."""
        self.procs.pop(key, None)

    def _let_go(self, proc: Proc) -> LetGo:
        del self.procs[proc.key]
        return LetGo(proc.key)

    def tick(self, now: float) -> list[LetGo]:
        """Idle processes unused for ``idle_seconds`` go."""
        return [self._let_go(p) for p in list(self.procs.values())
                if p.state == "idle" and now - p.idle_since > self.idle_seconds]

    def kill_group(self, group: str) -> list[LetGo]:
        """An attempt of ``group`` is killed: the group's idle processes go too."""
        return [self._let_go(p) for p in list(self.procs.values()) if p.state == "idle" and p.group == group]

    def idle_or_spare(self) -> list[int]:
        return [p.key for p in self.procs.values() if p.state in ("idle", "spare")]
