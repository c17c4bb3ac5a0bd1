"""Which peers are alive, from pings and failed calls: a pure, clock-driven phi-accrual failure detector.

A fixed timeout must be set for the worst machine the cluster will run on: short enough to notice a dead
peer soon, long enough that a peer on a busy host, whose answers come late now and then, is not declared
dead every few minutes. The phi-accrual detector (Hayashibara et al., 2004; used by Cassandra and Akka)
learns instead how a peer's heartbeats usually arrive and reports a *suspicion level*:

    phi(t) = -log10 P(the next heartbeat comes more than t seconds after the last one)

where the gaps between heartbeats are taken to be normally distributed with the mean and deviation of
the last :data:`WINDOW` gaps seen. A peer is down once phi passes ``threshold`` (8: the chance that a
live peer is wrongly declared down at that moment is 10^-8). ``pause`` seconds of silence are tolerated
on top of the usual gap (a garbage collection, a stalled disk) and the deviation never counts as less than
``min_deviation``, so a peer whose pings came like clockwork is not declared dead by one late answer. A
steady peer is thus down about ``pause + gap + 5.6 * min_deviation`` seconds after it went silent; one
whose answers were already irregular, later: the detector adapts to the machine it runs on.

Only heartbeats (pings and their answers) feed the gaps; any other answer proves the peer alive but says
nothing about the rhythm of pings. A refused or broken connection marks the peer down at once (no need to
wait when the kernel already said so); any later answer brings it back, and the gap across a time down is
not learnt. Callers pass the time in, so tests and the simulator drive the clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

#: gaps remembered per peer
WINDOW = 200


class _Arrivals:
    """The recent gaps between one peer's heartbeats, with running sums for O(1) mean and deviation."""

    __slots__ = ("gaps", "last_beat", "last_heard", "squares", "total")

    def __init__(self, now: float, first_gap: float) -> None:
        self.gaps: deque[float] = deque()
        self.total = self.squares = 0.0
        self.last_beat: float | None = None
        self.last_heard = now
        self.add(first_gap)

    def add(self, gap: float) -> None:
        if len(self.gaps) == WINDOW:
            old = self.gaps.popleft()
            self.total -= old
            self.squares -= old * old
        self.gaps.append(gap)
        self.total += gap
        self.squares += gap * gap

    def mean_and_deviation(self) -> tuple[float, float]:
        n = len(self.gaps)
        mean = self.total / n
        return mean, math.sqrt(max(self.squares / n - mean * mean, 0.0))


class FailureDetector:
    def __init__(self, peers: Iterable[str], *, interval: float, pause: float, now: float,
                 threshold: float = 8.0, min_deviation: float | None = None) -> None:
        """``interval``: the expected gap between heartbeats (what a new peer is assumed to have)."""
        self.interval = interval
        self.pause = pause
        self.threshold = threshold
        self.min_deviation = interval / 4 if min_deviation is None else min_deviation
        self._peers: dict[str, _Arrivals] = {}
        self._down: set[str] = set()
        self.set_peers(peers, now)

    def set_peers(self, peers: Iterable[str], now: float) -> None:
        """The peers to watch (membership changed): new ones start up, gone ones are forgotten."""
        wanted = set(peers)
        for peer in wanted - self._peers.keys():
            self._peers[peer] = _Arrivals(now, self.interval)
        for peer in set(self._peers) - wanted:
            del self._peers[peer]
            self._down.discard(peer)

    def heard_from(self, peer: str, now: float, *, beat: bool = False) -> bool:
        """Record an answer (``beat``: a ping or its answer); True when this brings the peer back up."""
        arrivals = self._peers.get(peer)
        if arrivals is None:
            return False
        back = peer in self._down
        if beat:
            if arrivals.last_beat is not None and not back:
                arrivals.add(now - arrivals.last_beat)
            arrivals.last_beat = now
        arrivals.last_heard = now
        if back:
            self._down.discard(peer)
        return back

    def unreachable(self, peer: str) -> bool:
        """Record a refused or broken connection; True when this takes the peer down."""
        if peer not in self._peers or peer in self._down:
            return False
        self._down.add(peer)
        return True

    def phi(self, peer: str, now: float) -> float:
        """The suspicion level of ``peer`` at ``now`` (0 for a peer not watched)."""
        arrivals = self._peers.get(peer)
        if arrivals is None:
            return 0.0
        mean, deviation = arrivals.mean_and_deviation()
        y = (now - arrivals.last_heard - mean - self.pause) / max(deviation, self.min_deviation)
        later = 0.5 * math.erfc(y / math.sqrt(2.0))
        return -math.log10(later) if later > 0.0 else math.inf

    def tick(self, now: float) -> list[str]:
        """Mark peers whose suspicion passed the threshold as down; returns the newly down ones."""
        newly = [peer for peer in sorted(self._peers)
                 if peer not in self._down and self.phi(peer, now) > self.threshold]
        self._down.update(newly)
        return newly

    def silence(self, peer: str, now: float) -> float:
        """Seconds since ``peer`` was last heard from."""
        arrivals = self._peers.get(peer)
        return 0.0 if arrivals is None else now - arrivals.last_heard

    def is_up(self, peer: str) -> bool:
        return peer not in self._down

    @property
    def down(self) -> frozenset[str]:
        return frozenset(self._down)

    def __contains__(self, peer: object) -> bool:
        """``peer in detector`` is True when the peer is down (so it can serve as a quorum's ``down``)."""
        return peer in self._down
