"""Coordinators' claims (dynamr.mapreduce.claims) in a seeded simulation: the real ClaimKeeper, several
coordinators, a Dynamo-style register that keeps siblings, clocks that differ, writes that are lost.

``python -m tests.sim.claims --seed 7`` replays one seed with its trace; ``--seeds 0:500`` runs a range.

The world: coordinators start (each after its start check, the real :meth:`ClaimKeeper.check`), renew
every period (the real :meth:`ClaimKeeper.renew`, its store calls answered by the simulation), and stop
(crash) at seeded times; some restart at the same place with a new id (no data directory), some start at
the same address on another host. The claim key lives on three replicas, as the store keeps it: a write
descends from the versions its read saw (and their ancestors: a vector clock's meaning) and replaces
those, leaving a sibling of anything else; it reaches each replica or not, late or not, and succeeds for
its writer when two replicas took it; a read asks two replicas. Replicas exchange what they
hold now and then (anti-entropy). Every clock is off by up to :data:`SKEW` seconds. The last
:data:`QUIET` seconds are fault-free.

Checked after every seed:

- **no phantom**: a coordinator only ever sees as rival another coordinator, from another place, that ran
  within the time a claim stays live (plus the clocks' skew and the store's delays);
- **no false refusal**: a coordinator refused at start only while such a rival ran;
- **detection**: coordinators from different places that both run through the quiet end see each other, and
  one starting in it after another passed its start check there (and is still up, recovering its jobs or
  running) is refused;
- **a bounded key**: the register holds no more siblings than there were coordinators writing in the
  last period.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import logging
import random
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any, cast

from dynamr.errors import CoordinatorConflictError, QuorumError
from dynamr.mapreduce.claims import CLAIM_KEY, CLOCK_SLACK, LIVE_PERIODS, ClaimKeeper, merged
from dynamr.store.client import AsyncClient, GetResult
from tests.sim.run import replay_or_run

EVERY = 10.0
#: the most any coordinator's clock is off (under CLOCK_SLACK / 2: two clocks differ by at most CLOCK_SLACK)
SKEW = 2.0
#: the longest a store message takes
DELAY = 1.0
END = 400.0
#: fault-free seconds at the end (detection must happen within them)
QUIET = 6 * EVERY
#: how long a claim can make a stopped coordinator look alive to another
LIVE = LIVE_PERIODS * EVERY + CLOCK_SLACK + 2 * SKEW + 2 * DELAY


class Violation(AssertionError):
    pass


@dataclass(frozen=True)
class Version:
    vid: int
    value: bytes
    #: every version this one descends from (what a vector clock stands for)
    history: frozenset[int]


@dataclass
class Replica:
    versions: dict[int, Version] = field(default_factory=dict)
    #: versions some version held here descends from (one arriving late stays out)
    replaced: set[int] = field(default_factory=set)

    def apply(self, version: Version) -> None:
        if version.vid in self.replaced:
            return
        self.replaced |= version.history
        for vid in version.history:
            self.versions.pop(vid, None)
        self.versions[version.vid] = version

    def merge(self, other: Replica) -> None:
        for version in list(other.versions.values()):
            self.apply(version)


class Op:
    """A store call the simulation answers: what a coroutine awaits."""

    def __init__(self, kind: str, value: bytes = b"", context: bytes = b"") -> None:
        self.kind, self.value, self.context = kind, value, context

    def __await__(self) -> Generator[Op, Any, Any]:
        return (yield self)


class SimClient:
    """The two calls ClaimKeeper makes, as :class:`Op` s."""

    async def get(self, key: bytes) -> GetResult:
        assert key == CLAIM_KEY
        result: GetResult = await Op("get")
        return result

    async def put(self, key: bytes, value: bytes, *, context: bytes = b"") -> bytes:
        assert key == CLAIM_KEY
        await Op("put", value, context)
        return b""


@dataclass
class Coordinator:
    cid: str
    host: str
    address: str
    skew: float
    start: float
    stop: float
    keeper: ClaimKeeper | None = None
    #: when its start check passed (it then recovers its jobs before it runs)
    checked_at: float | None = None
    running_since: float | None = None
    stopped_at: float | None = None
    refused_at: float | None = None
    #: when it last sent a write of its claim
    last_write: float = -1.0
    #: (time, ids of the rivals) after each renewal that read the key
    seen: list[tuple[float, list[str]]] = field(default_factory=list)

    @property
    def place(self) -> tuple[str, str]:
        return self.host, self.address


class World:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.queue: list[tuple[float, int, Callable[[], None]]] = []
        self.order = itertools.count()
        self.replicas = [Replica() for _ in range(3)]
        self.vids = itertools.count(1)
        #: every version written, by id
        self.written: dict[int, Version] = {}
        self.trace: list[str] = []
        self.drop = self.rng.choice([0.0, 0.1, 0.3])
        self.coordinators = self._cast()

    # --- the scenario ----------------------------------------------------------------------------------

    def _cast(self) -> list[Coordinator]:
        rng, out = self.rng, []
        hosts = ["h1", "h2", "h3"]
        for n in range(rng.randint(2, 5)):
            host = rng.choice(hosts)
            address = rng.choice(["10.0.0.1:7000", "10.0.0.2:7000"])
            start = rng.choice([0.0, 0.0, rng.uniform(0, END)])
            stop = rng.choice([END + 1, rng.uniform(start, END + 1)])
            out.append(Coordinator(f"c{n}", host, address, rng.uniform(-SKEW, SKEW), start, stop))
            if stop <= END and rng.random() < 0.5:  # restarted at the same place without its data directory
                again = rng.uniform(stop, END)
                out.append(Coordinator(f"c{n}r", host, address, rng.uniform(-SKEW, SKEW), again, END + 1))
        return out

    def at(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.queue, (self.now + delay, next(self.order), action))

    def log(self, text: str) -> None:
        self.trace.append(f"{self.now:8.2f} {text}")

    def faulty(self) -> bool:
        return self.now < END - QUIET

    def run(self) -> World:
        for c in self.coordinators:
            self.at(c.start, lambda c=c: self._start(c))
            if c.stop <= END:
                self.at(c.stop, lambda c=c: self._stop(c))
        self.at(self.rng.uniform(5, 30), self._anti_entropy)
        while self.queue:
            when, _, action = heapq.heappop(self.queue)
            if when > END:
                break
            self.now = when
            action()
        return self

    # --- coordinators ----------------------------------------------------------------------------------

    def _start(self, c: Coordinator) -> None:
        if c.stopped_at is not None:
            return
        first = self.coordinators.index
        if any(o.place == c.place and (o.start, first(o)) < (c.start, first(c)) and o.stopped_at is None
               and o.refused_at is None for o in self.coordinators):  # its address is taken there: no bind
            c.stopped_at = self.now
            self.log(f"{c.cid} cannot bind {c.place}: address in use")
            return
        c.keeper = ClaimKeeper(cast(AsyncClient, SimClient()), c.cid, c.address, EVERY, host=c.host,
                               clock=lambda: self.now + c.skew)
        self.log(f"{c.cid} starts at {c.place}")
        self._drive(c, c.keeper.check(budget=0), lambda ok: self._started(c, ok))

    def _started(self, c: Coordinator, outcome: BaseException | None) -> None:
        if isinstance(outcome, CoordinatorConflictError):
            c.refused_at = self.now
            self.log(f"{c.cid} refused: {outcome}")
            return
        if c.stopped_at is not None:
            return
        c.checked_at = self.now
        recovery = self.rng.choice([0.0, self.rng.uniform(0, 3 * EVERY)])  # its jobs, read back from SQLite
        self.log(f"{c.cid} passed its check; recovers for {recovery:.1f} s")
        self.at(recovery, lambda: self._runs(c))

    def _runs(self, c: Coordinator) -> None:
        if c.stopped_at is not None:
            return
        c.running_since = self.now
        self.log(f"{c.cid} runs")
        self._renew(c)  # (renew_forever: a renewal at once, then one every period)

    def _renew(self, c: Coordinator) -> None:
        if c.stopped_at is not None or c.keeper is None:
            return
        keeper = c.keeper

        def done(outcome: BaseException | None) -> None:
            if not isinstance(outcome, QuorumError):
                c.seen.append((self.now, [r.coordinator for r in keeper.rivals]))
            self.at(EVERY, lambda: self._renew(c))

        self._drive(c, keeper.renew(), done)

    def _stop(self, c: Coordinator) -> None:
        c.stopped_at = self.now
        self.log(f"{c.cid} stops")

    def _drive(self, c: Coordinator, coro: Coroutine[Any, Any, Any], then: Callable[[BaseException | None], None],
               answer: Any = None, error: BaseException | None = None) -> None:
        """Step a ClaimKeeper coroutine to its next store call, and answer it later (a crashed coordinator's
        coroutine is dropped, but a write it sent may still land)."""
        if c.stopped_at is not None:
            coro.close()
            return
        try:
            op = coro.throw(error) if error is not None else coro.send(answer)
        except StopIteration:
            return then(None)
        except (CoordinatorConflictError, QuorumError) as exc:
            return then(exc)
        assert isinstance(op, Op), op
        if op.kind == "get":
            self._get(lambda result, exc: self._drive(c, coro, then, result, exc))
        else:
            self._put(c, op, lambda exc: self._drive(c, coro, then, b"", exc))

    # --- the store -------------------------------------------------------------------------------------

    def _lost(self) -> bool:
        return self.faulty() and self.rng.random() < self.drop

    def _get(self, reply: Callable[[GetResult | None, BaseException | None], None]) -> None:
        asked = self.rng.sample(range(3), 2)
        answers = [i for i in asked if not self._lost()]
        if len(answers) < 2:
            self.at(self.rng.uniform(0, DELAY), lambda: reply(None, QuorumError("read: 1 of 2 replicas")))
            return
        view = Replica()
        for i in answers:
            view.merge(self.replicas[i])
        vids = sorted(view.versions)
        result = GetResult(tuple(view.versions[v].value for v in vids), ",".join(map(str, vids)).encode())
        self.at(self.rng.uniform(0, DELAY), lambda: reply(result, None))

    def _put(self, c: Coordinator, op: Op, reply: Callable[[BaseException | None], None]) -> None:
        read = [self.written[int(v)] for v in op.context.decode().split(",") if v]
        version = Version(next(self.vids), op.value,
                          frozenset(v.vid for v in read).union(*(v.history for v in read)))
        self.written[version.vid] = version
        c.last_write = self.now
        self.log(f"{c.cid} writes v{version.vid} over {sorted(v.vid for v in read)}: {sorted(merged([op.value]))}")
        taken = 0
        for replica in self.replicas:
            if self._lost():
                continue
            taken += 1
            self.at(self.rng.uniform(0, DELAY), lambda r=replica: r.apply(version))
        error = None if taken >= 2 else QuorumError(f"write: {taken} of 2 replicas")
        self.at(DELAY + self.rng.uniform(0, DELAY), lambda: reply(error))

    def _anti_entropy(self) -> None:
        a, b = self.rng.sample(self.replicas, 2)
        a.merge(b)
        b.merge(a)
        self.at(self.rng.uniform(5, 30), self._anti_entropy)

    # --- the invariants --------------------------------------------------------------------------------

    def _ran_within(self, other: Coordinator, begin: float, end: float) -> bool:
        return (other.running_since is not None and other.running_since <= end
                and (other.stopped_at is None or other.stopped_at >= begin))

    def _started_within(self, other: Coordinator, begin: float, end: float) -> bool:
        """Ran, or passed its check and wrote a claim that may have landed, within [begin, end]."""
        return other.start <= end and (other.stopped_at is None or other.stopped_at >= begin) \
            and other.refused_at is None

    def check(self) -> None:
        by_id = {c.cid: c for c in self.coordinators}
        for c in self.coordinators:
            for when, rivals in c.seen:
                for rid in rivals:
                    r = by_id.get(rid)
                    if r is None or r.place == c.place or not self._started_within(r, when - LIVE, when):
                        raise Violation(f"seed {self.seed}: {c.cid} saw {rid} as a rival at {when:.2f}, but it "
                                        f"did not run then (or is at its own place)")
            if c.refused_at is not None and not any(
                    r.place != c.place and self._started_within(r, c.refused_at - LIVE, c.refused_at)
                    for r in self.coordinators if r is not c):
                raise Violation(f"seed {self.seed}: {c.cid} was refused at {c.refused_at:.2f} with no rival running")
        quiet = END - QUIET
        settled = quiet + 2 * EVERY + 4 * DELAY
        for c in self.coordinators:
            if c.running_since is None or c.stopped_at is not None or c.running_since > quiet:
                continue
            last = [rivals for when, rivals in c.seen if when >= settled]
            for r in self.coordinators:
                if r is c or r.place == c.place or r.running_since is None or r.stopped_at is not None \
                        or r.running_since > quiet:
                    continue
                if not last or not all(r.cid in rivals for rivals in last):
                    raise Violation(f"seed {self.seed}: {c.cid} and {r.cid} both ran through the quiet end, but "
                                    f"{c.cid} did not see {r.cid} at every renewal after {settled:.0f}: {last}")
        for c in self.coordinators:  # (in the quiet end, where no write is lost)
            if c.checked_at is None:
                continue
            others = [r for r in self.coordinators if r.place != c.place and r.checked_at is not None
                      and quiet <= r.checked_at <= c.start - 2 * DELAY and (r.stopped_at or END) > c.start]
            if others:
                raise Violation(f"seed {self.seed}: {c.cid} started at {c.start:.2f}, after {others[0].cid} had "
                                f"passed its check at {others[0].checked_at:.2f}, and was not refused")
        # (a write concurrent with another leaves a sibling until the next renewal that reads both)
        writers = sum(1 for c in self.coordinators if c.last_write >= END - EVERY - 4 * DELAY)
        for i, replica in enumerate(self.replicas):
            if writers and len(replica.versions) > writers:
                raise Violation(f"seed {self.seed}: replica {i} holds {len(replica.versions)} siblings for "
                                f"{writers} coordinator(s) writing")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, help="replay one seed and print its trace")
    parser.add_argument("--seeds", default="0:500", help="a range start:end of seeds to run")
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)
    try:
        return replay_or_run(World, args.seed, args.seeds, "claims")
    finally:
        logging.disable(logging.NOTSET)


if __name__ == "__main__":
    raise SystemExit(main())

