"""Which peers are alive, from pings and failed calls: a pure, clock-driven failure detector.

A peer is up while it answered within ``timeout`` seconds. A refused or broken connection marks it down at
once (no need to wait for the timeout when the kernel already said so); any later answer brings it back.
Callers pass the time in, so tests drive the clock.
"""

from __future__ import annotations

from collections.abc import Iterable


class FailureDetector:
    def __init__(self, peers: Iterable[str], timeout: float, now: float) -> None:
        self.timeout = timeout
        self._last_heard = dict.fromkeys(peers, now)
        self._down: set[str] = set()

    def set_peers(self, peers: Iterable[str], now: float) -> None:
        """The peers to watch (membership changed): new ones start up, gone ones are forgotten."""
        wanted = set(peers)
        for peer in wanted - self._last_heard.keys():
            self._last_heard[peer] = now
        for peer in set(self._last_heard) - wanted:
            del self._last_heard[peer]
            self._down.discard(peer)

    def heard_from(self, peer: str, now: float) -> bool:
        """Record an answer; True when this brings the peer back up."""
        if peer not in self._last_heard:
            return False
        self._last_heard[peer] = now
        if peer in self._down:
            self._down.discard(peer)
            return True
        return False

    def unreachable(self, peer: str) -> bool:
        """Record a refused or broken connection; True when this takes the peer down."""
        if peer not in self._last_heard or peer in self._down:
            return False
        self._down.add(peer)
        return True

    def tick(self, now: float) -> list[str]:
        """Mark peers silent for longer than the timeout as down; returns the newly down ones."""
        newly = [peer for peer, heard in self._last_heard.items()
                 if peer not in self._down and now - heard > self.timeout]
        self._down.update(newly)
        return newly

    def is_up(self, peer: str) -> bool:
        return peer not in self._down

    @property
    def down(self) -> frozenset[str]:
        return frozenset(self._down)

    def __contains__(self, peer: object) -> bool:
        """``peer in detector`` is True when the peer is down (so it can serve as a quorum's ``down``)."""
        return peer in self._down
