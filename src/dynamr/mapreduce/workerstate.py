"""A worker's protocol with the coordinator as a pure state machine: polls, replies, attempts, reports.

The asyncio worker (:mod:`dynamr.mapreduce.worker`) and the simulator's nodes both drive it. Each poll has a
sequence number; only the reply to the poll in flight is applied (a late or repeated reply is dropped, so
an assignment is started once). An attempt is *running* from the moment its assignment is accepted until
it ends, and every poll lists it, so the coordinator can tell an assignment that never arrived. An ended
attempt's report is resent with every poll until a reply acknowledges it.

An idle worker (free slots, nothing running, nothing to report) lets the coordinator hold its poll while
there is no task for it; a reply that says "again" and starts nothing is followed by the next poll at
once. So an idle worker always has a poll waiting at the coordinator, and a new task reaches it the moment
it is ready instead of up to a heartbeat later; the coordinator still hears from it once a hold at most.
"""

from __future__ import annotations

from dataclasses import dataclass

from dynamr.rpc.messages import AttemptReport, TaskSpec, WorkerHeartbeat

#: seconds to the next poll when the coordinator said tasks may be ready soon, and how many such quick
#: polls may follow each other (a commit that takes long to write does not make a worker poll in a loop)
SOON = 0.02
QUICK_POLLS = 10
#: the longest wait before polling again after a poll failed (the coordinator restarting, or not yet up
#: when its nodes start): a long heartbeat does not keep a worker from its coordinator for long
RETRY = 1.0
#: the longest wait between polls while every slot is busy and nothing is to report (the poll then only
#: says the worker lives and how far its attempts are; an attempt that ends wakes the worker at once)
BUSY = 0.5


def keepable(poll: WorkerHeartbeat) -> bool:
    """A poll the coordinator may keep while it has no task for the worker: the worker allows it and is idle
    (free slots, nothing running, nothing to report)."""
    return poll.hold > 0 and not poll.reports and not poll.running and poll.free_slots > 0


@dataclass(frozen=True, slots=True)
class Start:
    attempt: str
    spec: TaskSpec


@dataclass(frozen=True, slots=True)
class Kill:
    attempt: str


class WorkerState:
    def __init__(self, node_id: str, incarnation: str, slots: int) -> None:
        self.node_id = node_id
        self.incarnation = incarnation
        self.slots = max(1, slots)
        self.seq = 0
        #: the seq of the poll whose reply is awaited (None: no poll in flight)
        self.in_flight: int | None = None
        #: attempt -> spec of every accepted attempt not yet ended
        self.running: dict[str, TaskSpec] = {}
        #: ended attempts whose reports are not acknowledged yet (in the order they ended)
        self.reports: dict[str, AttemptReport] = {}
        #: attempts asked to be killed (so a kill repeated in later replies is carried out once)
        self.killing: set[str] = set()
        #: quick polls in a row (see :meth:`next_poll`)
        self.quick = 0
        #: the last reply said "again" and started nothing: poll again at once (the coordinator keeps it);
        #: so is the first poll, which makes the worker known
        self.again = True
        #: the last poll got no answer
        self.failed = False

    def poll(self, progress: dict[str, float] | None = None, hold: float = 0.0) -> WorkerHeartbeat:
        """The next poll to send (a poll still in flight is abandoned: its reply will be dropped). An idle
        worker lets the coordinator keep it up to ``hold`` seconds while there is no task for it."""
        self.seq += 1
        self.in_flight = self.seq
        running = tuple(self.running)
        fractions = progress or {}
        idle = not self.running and not self.reports
        return WorkerHeartbeat(node_id=self.node_id, free_slots=max(0, self.slots - len(self.running)),
                               reports=tuple(self.reports.values()), running=running,
                               progress=tuple(fractions.get(a, -1.0) for a in running),
                               incarnation=self.incarnation, seq=self.seq, hold=hold if idle else 0.0)

    def poll_failed(self) -> None:
        self.in_flight = None
        self.failed = True
        self.again = False  # (a coordinator that is down is not polled in a loop)

    def replied(self, seq: int, assignments: tuple[TaskSpec, ...], kills: tuple[str, ...],
                acked: tuple[str, ...], soon: bool = False, again: bool = False) -> list[Start | Kill]:
        """Apply the reply to poll ``seq``; returns what to start and what to kill. ``soon``: the
        coordinator expects tasks to be ready within moments; ``again``: it will keep the next poll until it has
        a task (see :meth:`next_poll`)."""
        if seq != self.in_flight:
            return []  # late, repeated or unasked for
        self.in_flight = None
        self.failed = False
        self.quick = self.quick + 1 if soon else 0
        self.again = again and not assignments and not kills
        for attempt in acked:
            self.reports.pop(attempt, None)
        out: list[Start | Kill] = []
        for attempt in kills:
            if attempt in self.running and attempt not in self.killing:
                self.killing.add(attempt)
                out.append(Kill(attempt))
        for spec in assignments:
            attempt = spec.attempt
            if attempt in self.running or attempt in self.reports:
                continue
            self.running[attempt] = spec
            out.append(Start(attempt, spec))
        return out

    def next_poll(self, interval: float) -> float:
        """Seconds until the next poll: none after an "again" reply that started nothing (the coordinator keeps
        the next one until it has a task); soon after a reply that said tasks may be ready within moments
        (at most :data:`QUICK_POLLS` times in a row); up to :data:`BUSY` while every slot is busy and no
        report waits (no assignment could be taken); at most :data:`RETRY` after a poll that failed; else
        ``interval``."""
        if self.again and self.in_flight is None and not self.running and not self.reports:
            return 0.0
        if self.failed:
            return min(interval, RETRY)
        if 0 < self.quick <= QUICK_POLLS:
            return min(interval, SOON)
        if len(self.running) >= self.slots and not self.reports:
            return max(interval, BUSY)
        return interval

    def ended(self, report: AttemptReport) -> None:
        """An attempt ended (its report goes out with the next polls until acknowledged)."""
        if self.running.pop(report.attempt, None) is None:
            return
        self.killing.discard(report.attempt)
        self.reports[report.attempt] = report
