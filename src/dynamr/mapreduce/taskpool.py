"""A worker's task processes as a pure state machine: which process runs an attempt, which stay, which go.

The asyncio worker owns the processes themselves (keyed by a number) and carries out what this decides:

- an attempt of job J runs on an *idle* process that last ran J (its store client and J's loaded code are
  warm), else on a *spare* (started ahead, imports done, no job yet), else on a process started for it;
  a process never serves two jobs (user code of one must not see another's module state);
- spares are started only on a core no attempt needs: up to ``slots`` minus the attempts running (or
  whose process is starting) are ready or starting. So the worker starts ``slots`` of them when it starts,
  none while every slot is busy (importing would slow the attempts: 0.25 s of CPU each), and the pool fills
  again in a phase's tail and between jobs, for the next job;
- after an attempt the worker says whether the process may be kept (it ended well, did not ask to retire,
  is alive); at most ``slots`` idle processes are kept (the oldest goes), and one idle for
  ``idle_seconds`` goes;
- killing an attempt of J also lets J's idle processes go (user code may have left things behind).

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
    job: str | None = None
    idle_since: float = 0.0


@dataclass(frozen=True, slots=True)
class Use:
    """Run the attempt on process ``key`` (the worker makes sure it is alive, else reports it gone)."""

    key: int


@dataclass(frozen=True, slots=True)
class StartNew:
    """No process is ready: start one for this attempt (then :meth:`ProcessPool.started`)."""


@dataclass(frozen=True, slots=True)
class LetGo:
    """Kill process ``key`` (it is idle or spare: no attempt is lost)."""

    key: int


@dataclass
class ProcessPool:
    slots: int
    idle_seconds: float = 20.0
    procs: dict[int, Proc] = field(default_factory=dict)
    #: spares being started
    starting: int = 0
    #: processes being started for an attempt (StartNew)
    launching: int = 0

    def _move(self, proc: Proc, new: str) -> None:
        if (proc.state, new) not in MOVES:
            raise IllegalTransition(f"task process {proc.key}: {proc.state} -> {new} is not a legal move")
        proc.state = new

    def acquire(self, job: str) -> tuple[Use | StartNew, int]:
        """A process for an attempt of ``job``; also how many spares to start now."""
        idle = [p for p in self.procs.values() if p.state == "idle" and p.job == job]
        spares = [p for p in self.procs.values() if p.state == "spare"]
        if idle or spares:
            proc = idle[0] if idle else spares[-1]
            self._move(proc, "busy")
            proc.job = job
            return Use(proc.key), self.spares_wanted()
        self.launching += 1
        return StartNew(), self.spares_wanted()

    def spares_wanted(self) -> int:
        """How many spares to start now (they count as starting until :meth:`started` or
        :meth:`spare_failed`)."""
        busy = sum(1 for p in self.procs.values() if p.state == "busy") + self.launching
        ready = sum(1 for p in self.procs.values() if p.state == "spare")
        wanted = max(0, self.slots - busy - ready - self.starting)
        self.starting += wanted
        return wanted

    def started(self, key: int, job: str | None) -> None:
        """A process is up: a spare (``job`` None, one of those asked for), or one started for an attempt."""
        if job is None:
            self.starting = max(0, self.starting - 1)
            self.procs[key] = Proc(key, "spare")
        else:
            self.launching = max(0, self.launching - 1)
            self.procs[key] = Proc(key, "busy", job)

    def launch_failed(self) -> None:
        """The process started for an attempt (:class:`StartNew`) did not start."""
        self.launching = max(0, self.launching - 1)

    def spare_failed(self) -> None:
        self.starting = max(0, self.starting - 1)

    def released(self, key: int, *, keep: bool, now: float) -> list[LetGo]:
        """An attempt on ``key`` ended. Kept: idle (the oldest idle goes past ``slots``); else it is gone."""
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

    def kill_job(self, job: str) -> list[LetGo]:
        """An attempt of ``job`` is killed: its idle processes go too."""
        return [self._let_go(p) for p in list(self.procs.values()) if p.state == "idle" and p.job == job]

    def idle_or_spare(self) -> list[int]:
        return [p.key for p in self.procs.values() if p.state in ("idle", "spare")]
