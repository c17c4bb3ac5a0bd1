"""Simulated nodes: the real :class:`~dynamr.mapreduce.workerstate.WorkerState` polling over the simulated
network, and task attempts (:class:`Runner`) that read their input when they start and write their output,
as the child process would, when they end.
"""

from __future__ import annotations

import zlib
from collections import Counter
from typing import TYPE_CHECKING

from dynamr.mapreduce import protocol as p
from dynamr.mapreduce.jobrun import task_of
from dynamr.mapreduce.workerstate import Kill, Start, WorkerState
from dynamr.rpc.messages import AttemptReport, TaskSpec

if TYPE_CHECKING:
    from tests.sim.world import World


class SimNode:
    """A node's worker, simulated: the real WorkerState, polls over the simulated network, task attempts."""

    def __init__(self, world: World, name: str) -> None:
        self.w = world
        self.name = name
        self.up = False
        self.paused = False
        self.generation = 0
        self.state = WorkerState(name, "", world.sc.slots)
        self.attempts: dict[str, int] = {}  # attempt -> generation of the run that will end it
        self._poll_sent = 0.0

    def idle(self) -> bool:
        return self.up and not self.paused and not self.state.running and not self.state.reports

    def boot(self) -> None:
        if self.up:
            return
        self.up = True
        self.paused = False
        self.generation += 1
        incarnation = f"{self.name}-{self.generation}-{self.w.rng.randrange(1 << 30):x}"
        self.state = WorkerState(self.name, incarnation, self.w.sc.slots)
        self.attempts = {}
        self.w.log(f"BOOT node {self.name} ({incarnation})")
        self._loop(self.generation)

    def crash(self) -> None:
        self.up = False
        self.generation += 1  # its attempts die with it (task processes die with their node)
        for attempt in self.attempts:
            self._partial(attempt)
        self.attempts = {}

    def _partial(self, attempt: str) -> None:
        """A map attempt killed while writing its output leaves some partitions behind: a store node that had
        its request still lands the write, up to a few seconds later on a loaded machine."""
        w = self.w
        if "-m" in attempt and w.rng.random() < 0.5:
            key = f"out/{attempt.split('/', 1)[0]}/{attempt}/0"
            delay = w.rng.uniform(0.0, 3.0)
            very_late = w.late_rng.random() < w.sc.faults.very_late  # (its own draws: seeds replay as before)
            if very_late:  # held by a paused replica past every sweep: only the janitor can delete it
                grace = w.sc.settings.late_write_grace
                delay = w.late_rng.uniform(grace, 6 * grace)

            def land() -> None:
                w.store.data[key] = Counter({"partial": 1})
                w.log(f"PARTIAL output of {attempt} lands{' (very late)' if very_late else ''}")
                if very_late:
                    w.very_late.add(key)

            w.at(delay, land)

    def resume(self) -> None:
        if self.up and self.paused:
            self.w.log(f"RESUME node {self.name}")
            self.paused = False

    def _loop(self, generation: int) -> None:
        if generation != self.generation:
            return
        w = self.w
        if not self.paused and (self.state.in_flight is None or w.now - self._poll_sent > 2.0):
            if self.state.in_flight is not None:
                self.state.poll_failed()  # no answer in time
            self._send_poll()
        w.at(self.state.next_poll(0.5 if not self.state.reports else 0.1), lambda: self._loop(generation))

    def _send_poll(self) -> None:
        w = self.w
        msg = self.state.poll(hold=0.5)
        self._poll_sent = w.now
        w.send(lambda: w.coord.receive_poll(msg), f"poll {msg.seq} from {self.name}")

    def receive_reply(self, ins: p.ReplyToWorker, again: bool = False) -> None:
        if not self.up or self.paused:
            return
        for action in self.state.replied(ins.seq, ins.assignments, ins.kills, ins.acked, ins.soon, again):
            if isinstance(action, Start):
                self._start(action.attempt, action.spec)
            elif isinstance(action, Kill) and action.attempt in self.attempts:
                self.w.log(f"KILLED {action.attempt} on {self.name}")
                del self.attempts[action.attempt]
                self._partial(action.attempt)
                self.state.ended(AttemptReport(attempt=action.attempt, ok=False, error="killed", cause="killed"))
        if self.state.in_flight is None and self.state.next_poll(0.5) == 0.0:
            self._send_poll()  # "again" and nothing started: the next goes at once, as the worker's loop sends it

    # --- attempts --------------------------------------------------------------------------------

    def _start(self, attempt: str, spec: TaskSpec) -> None:
        w = self.w
        duration = w.rng.uniform(0.2, 3.0)
        if w.rng.random() < w.sc.faults.straggler:
            duration *= 10
        self.attempts[attempt] = self.generation
        w.log(f"START {attempt} on {self.name} ({duration:.2f}s)")
        runner = Runner(w, spec)
        runner.read()  # an attempt reads its input as it starts and writes its output as it ends
        w.at(duration, lambda: self._finish(attempt, runner, self.generation))

    def _finish(self, attempt: str, runner: Runner, generation: int) -> None:
        if generation != self.generation or attempt not in self.attempts:
            return  # the node crashed, or the attempt was killed
        if self.paused and zlib.crc32(attempt.encode()) % 2:
            # half the attempts are stopped with their paused node (SIGSTOP on its process group): they write
            # when it resumes, maybe long after their job was cleaned up; the others run on, cut off from it
            self.w.at(0.1, lambda: self._finish(attempt, runner, generation))
            return
        del self.attempts[attempt]
        report = runner.run()
        self.w.log(f"END {attempt} on {self.name}: {'ok' if report.ok else report.cause or 'error'} "
                   f"{report.error}")
        self.state.ended(report)


class Runner:
    """One attempt's work, as the child process would do it, against the simulated store."""

    def __init__(self, world: World, spec: TaskSpec) -> None:
        self.w = world
        self.spec = spec
        self.job = spec.job
        self.attempt = spec.attempt
        self.input: Counter[str] | LostInput | None = None

    def read(self) -> None:
        try:
            self.input = self._read()
        except LostInput as lost:
            self.input = lost

    def run(self) -> AttemptReport:
        w, f = self.w, self.w.sc.faults
        task = task_of(self.attempt)
        if w.user_failures[task] < 2 and w.rng.random() < f.user_fail:
            w.user_failures[task] += 1
            return AttemptReport(attempt=self.attempt, ok=False, error="ValueError: bad record", traceback="tb")
        if w.rng.random() < f.task_store_fail:
            return AttemptReport(attempt=self.attempt, ok=False, cause="store",
                                 error="QuorumError: only 1 of 2 replicas answered")
        counts = self.input
        if isinstance(counts, LostInput):
            lost = counts
            return AttemptReport(attempt=self.attempt, ok=False, cause="input_lost", lost_task=lost.task,
                                 lost_attempt=lost.attempt, error=f"InputLostError: {lost.task}")
        assert counts is not None
        if self.spec.kind == "map":
            return self._write_map(counts)
        target = self.spec.output
        assert target is not None and target.kind in ("store", "object") and target.key
        w.store.data[f"whole/{self.job}/{self.attempt}"] = counts  # published, or read, once committed
        return AttemptReport(attempt=self.attempt, ok=True)

    def _read(self) -> Counter[str]:
        data = self.w.store.data
        spec = self.spec
        if spec.kind == "reduce":
            total: Counter[str] = Counter()
            for c in spec.commits:
                if spec.partition not in c.partitions:
                    continue
                part = data.get(f"out/{self.job}/{c.attempt}/{spec.partition}")
                if part is None:
                    raise LostInput(c.task_id, c.attempt)
                total.update(part)
            return total
        source = spec.input
        assert source is not None
        if source.kind == "split":
            counts: Counter[str] = Counter()
            for split in source.splits:
                offset = 0
                for line in self.w.files[split.path]:
                    if split.start <= offset < split.end:
                        counts.update(line.split())
                    offset += len(line) + 1
            return counts
        assert spec.producer is not None and source.key.endswith(spec.producer.attempt)
        value = data.get(f"whole/{self.job}/{spec.producer.attempt}")
        if value is None:
            raise LostInput(spec.producer.task_id, spec.producer.attempt)
        return Counter(value)

    def _write_map(self, counts: Counter[str]) -> AttemptReport:
        parts: dict[int, Counter[str]] = {}
        for word, n in counts.items():
            parts.setdefault(zlib.crc32(word.encode()) % self.spec.num_partitions, Counter())[word] += n
        for part, value in parts.items():
            self.w.store.data[f"out/{self.job}/{self.attempt}/{part}"] = value
        words = sum(counts.values()) if self.spec.step == 0 else 0
        return AttemptReport(attempt=self.attempt, ok=True, partitions=tuple(sorted(parts)),
                             counters=(("sim", "words", words),))


class LostInput(Exception):
    def __init__(self, task: str, attempt: str) -> None:
        super().__init__(task)
        self.task = task
        self.attempt = attempt
