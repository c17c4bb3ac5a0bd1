"""Quorum coordination of one read or one write, as pure state machines.

A coordinator feeds replies and failures in and gets back the next sends to make; it never touches a
socket. :class:`WriteQuorum` implements sloppy quorum: a write goes to the key's N preferred nodes, and
for each one believed down, or failing during the request, to the next healthy fallback in the ring walk
with a hint naming the node it stands in for. :class:`ReadQuorum` asks the first N healthy nodes of the
walk (which include the fallbacks holding hints) and moves on to the next node when one fails.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from enum import Enum


class Outcome(Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Send:
    """Send the request to ``node``; ``hint_for`` names the preferred node a fallback stands in for."""

    node: str
    hint_for: str = ""


@dataclass(slots=True)
class WriteQuorum:
    walk: tuple[str, ...]
    n: int
    w: int
    down: Container[str]
    acked: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    outstanding: dict[str, str] = field(default_factory=dict)  # node -> hint_for
    unplaced: list[str] = field(default_factory=list)  # preferred nodes with no fallback left
    _fallbacks: list[str] = field(default_factory=list)

    def start(self) -> list[Send]:
        primaries = self.walk[:self.n]
        self._fallbacks = [node for node in self.walk[self.n:] if node not in self.down]
        sends: list[Send] = []
        for node in primaries:
            send = Send(node) if node not in self.down else self._fallback_for(node)
            if send is not None:
                sends.append(send)
        # When the nodes believed up cannot make W (no fallback is left for the others), try the preferred
        # nodes believed down anyway: the failure detector may simply not have noticed that they are back (a
        # node that was still starting when it was first pinged). One that does fail is then hinted.
        if len(sends) < self.w:
            sends += [Send(node) for node in self.unplaced]
            self.unplaced.clear()
        for send in sends:
            self.outstanding[send.node] = send.hint_for
        return sends

    def _fallback_for(self, owner: str) -> Send | None:
        if not self._fallbacks:
            self.unplaced.append(owner)
            return None
        return Send(self._fallbacks.pop(0), hint_for=owner)

    def on_ack(self, node: str) -> None:
        if self.outstanding.pop(node, None) is not None:
            self.acked.append(node)

    def on_failure(self, node: str) -> list[Send]:
        hint_for = self.outstanding.pop(node, None)
        if hint_for is None:
            return []
        self.failed.append(node)
        send = self._fallback_for(hint_for or node)
        if send is None:
            return []
        self.outstanding[send.node] = send.hint_for
        return [send]

    @property
    def outcome(self) -> Outcome:
        if len(self.acked) >= self.w:
            return Outcome.SUCCEEDED
        if len(self.acked) + len(self.outstanding) < self.w:
            return Outcome.FAILED
        return Outcome.PENDING

    @property
    def all_preferred_acked(self) -> bool:
        """True when every preferred node acknowledged directly (no hint involved)."""
        return set(self.walk[:self.n]) <= set(self.acked)


@dataclass(slots=True)
class ReadQuorum:
    walk: tuple[str, ...]
    n: int
    r: int
    down: Container[str]
    replied: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    outstanding: set[str] = field(default_factory=set)
    _spare: list[str] = field(default_factory=list)

    def start(self) -> list[str]:
        healthy = [node for node in self.walk if node not in self.down]
        targets = healthy[:self.n] if len(healthy) >= self.r else list(self.walk[:self.n])
        self._spare = [node for node in healthy if node not in targets]
        self.outstanding.update(targets)
        return targets

    def on_reply(self, node: str) -> None:
        if node in self.outstanding:
            self.outstanding.discard(node)
            self.replied.append(node)

    def on_failure(self, node: str) -> list[str]:
        if node not in self.outstanding:
            return []
        self.outstanding.discard(node)
        self.failed.append(node)
        if not self._spare:
            return []
        nxt = self._spare.pop(0)
        self.outstanding.add(nxt)
        return [nxt]

    @property
    def outcome(self) -> Outcome:
        if len(self.replied) >= self.r:
            return Outcome.SUCCEEDED
        if len(self.replied) + len(self.outstanding) < self.r:
            return Outcome.FAILED
        return Outcome.PENDING
