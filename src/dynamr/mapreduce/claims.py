"""Which coordinators use the store: one key where each coordinator renews its claim, so a second one is seen.

A coordinator knows only its own jobs. Two coordinators on one store (a misconfiguration: a copied cluster
file, a coordinator started again elsewhere with a fresh data directory while the old one runs) would each
take the other's intermediate data for leftovers, and the janitor deletes leftovers. So every coordinator
writes a *claim* under :data:`CLAIM_KEY` every ``every`` seconds: its persistent id (kept in its data
directory), its address, the wall-clock time of the write and its period. A claim is *live* while it is
younger than :data:`LIVE_PERIODS` periods plus :data:`CLOCK_SLACK` (clocks of different machines differ a
little). A *rival* is a live claim of another id from another *place*: another address, or the same address
on another host (a coordinator restarted without a data directory gets a new id at the same address on the
same host: that is the same coordinator, since a live one would hold the address; a copied cluster file, a
moved virtual IP or a container can give two live coordinators one address on two hosts).

- At start, before it recovers anything, a coordinator reads the claims (without writing its own) and
  refuses to start while a rival is live (:class:`~dynamr.errors.CoordinatorConflictError`, one line that
  names the rival and says how long to wait if it is gone).
- While it runs, it keeps its claim and looks at the others at every renewal: while a rival is live (two
  started at the same moment, or a partition healed) it accepts no new job and its janitor deletes nothing,
  and it says so in its log and its metrics. So does the rival: both stop doing harm until one is stopped.
- The janitor also renews right before it scans, and skips its round when the claims cannot be read or a
  rival is live (before it scans, and again before it deletes).

Concurrent writers leave siblings; every reader merges them (the newest claim per id) and writes the merged
map back with the context it read, so the key holds one value again. Claims not renewed for
:data:`FORGET_AFTER` seconds are dropped. Malformed entries are ignored (any client holding the cluster
secret can write the key; none can make a coordinator start or delete anything by it).

The decisions (:func:`merged`, :func:`rivals`, :func:`renewed`) are pure and unit-tested; :class:`ClaimKeeper`
does the store I/O.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import msgpack

from dynamr.errors import CoordinatorConflictError, DynamrError
from dynamr.mapreduce import intermediate as im
from dynamr.store.client import AsyncClient

log = logging.getLogger(__name__)

#: the key of the claims (under the commit records' prefix, but not a commit record: the janitor skips it)
CLAIM_KEY = (im.PREFIX + "@coordinators").encode()
#: a claim is live for this many periods of its writer after it was written ...
LIVE_PERIODS = 3
#: ... plus this many seconds, for clocks of different machines that differ a little
CLOCK_SLACK = 5.0
#: claims not renewed for this long are dropped from the key
FORGET_AFTER = 86400.0
#: the longest period between renewals (shorter when the janitor runs more often)
CLAIM_EVERY = 10.0
#: how long a starting coordinator waits for the store to tell whether another coordinator claims it
CHECK_SECONDS = 5.0


def claim_period(janitor_interval: float) -> float:
    """How often a coordinator renews its claim: at least three times per janitor round."""
    if janitor_interval <= 0:
        return CLAIM_EVERY
    return max(0.05, min(CLAIM_EVERY, janitor_interval / 3))


@dataclass(frozen=True)
class Claim:
    coordinator: str
    address: str
    written: float
    every: float
    #: the host it runs on ("" in a claim that does not say)
    host: str = ""

    @property
    def place(self) -> tuple[str, str]:
        """Where it serves: one coordinator at a time can serve at one address on one host."""
        return self.host, self.address

    def live(self, now: float) -> bool:
        return now - self.written <= LIVE_PERIODS * self.every + CLOCK_SLACK

    def expires_in(self, now: float) -> float:
        return max(0.0, self.written + LIVE_PERIODS * self.every + CLOCK_SLACK - now)


def _decode_one(value: bytes) -> list[Claim]:
    try:
        raw = msgpack.unpackb(value, raw=False)
    except Exception:  # any undecodable value is simply not a claim
        return []
    if not isinstance(raw, dict):
        return []
    out = []
    for cid, entry in raw.items():
        if (isinstance(cid, str) and isinstance(entry, list) and len(entry) in (3, 4) and isinstance(entry[0], str)
                and all(isinstance(x, int | float) and not isinstance(x, bool) for x in entry[1:3])
                and entry[2] > 0 and (len(entry) == 3 or isinstance(entry[3], str))):
            out.append(Claim(cid, entry[0], float(entry[1]), float(entry[2]), *entry[3:]))
    return out


def merged(values: Iterable[bytes]) -> dict[str, Claim]:
    """The claims of every sibling, the newest per coordinator id."""
    claims: dict[str, Claim] = {}
    for value in values:
        for claim in _decode_one(value):
            old = claims.get(claim.coordinator)
            if old is None or claim.written > old.written:
                claims[claim.coordinator] = claim
    return claims


def encode(claims: dict[str, Claim]) -> bytes:
    packed: bytes = msgpack.packb({c.coordinator: [c.address, c.written, c.every, c.host] for c in claims.values()})
    return packed


def rivals(claims: dict[str, Claim], me: str, place: tuple[str, str], now: float) -> list[Claim]:
    """Live claims of other coordinators (another id from another place: :attr:`Claim.place`), oldest first."""
    return sorted((c for c in claims.values() if c.coordinator != me and c.place != place and c.live(now)),
                  key=lambda c: c.written)


def renewed(claims: dict[str, Claim], mine: Claim) -> dict[str, Claim]:
    """The claims with ``mine`` written, without the earlier ids from its place (itself, restarted without a
    data directory) and those not renewed for :data:`FORGET_AFTER` (the key stays small)."""
    kept = {cid: c for cid, c in claims.items()
            if c.place != mine.place and mine.written - c.written <= FORGET_AFTER}
    kept[mine.coordinator] = mine
    return kept


def conflict_message(found: Sequence[Claim], now: float) -> str:
    rival = found[0]
    where = rival.address if not rival.host else f"{rival.address} on host {rival.host}"
    return (f"another coordinator ({rival.coordinator[:12]} at {where}) uses this cluster's store "
            f"(its claim was renewed {max(0.0, now - rival.written):.0f} s ago): two coordinators each take the "
            f"other's jobs' data for leftovers; stop one (if it is gone, its claim lapses in "
            f"{rival.expires_in(now):.0f} s)")


class ClaimKeeper:
    """Reads and renews this coordinator's claim; :attr:`rivals` is what the last read found."""

    def __init__(self, client: AsyncClient, coordinator: str, address: str, every: float,
                 host: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        #: the wall clock claims are written and judged by (the simulator's, in tests/sim/claims.py)
        self.clock = clock
        self.coordinator = coordinator
        self.address = address
        self.every = every
        self.host = socket.gethostname() if host is None else host
        #: rivals seen by the last successful read
        self.rivals: list[Claim] = []

    def refusal(self) -> str | None:
        """Why this coordinator accepts no job now (a rival's claim is live), or None."""
        if not self.rivals:
            return None
        return f"this coordinator accepts no job now: {conflict_message(self.rivals, self.clock())}"

    async def check(self, budget: float = CHECK_SECONDS) -> None:
        """At start: raise :class:`CoordinatorConflictError` if a rival is live (nothing is written); else write
        this coordinator's claim at once, before it recovers its jobs, so that one starting a moment later
        sees it (a recovery can take long). A store that does not answer within ``budget`` seconds (nodes
        still starting) is not waited for: the renewals look again once the coordinator runs."""
        deadline = time.monotonic() + budget
        while True:
            try:
                result = await self.client.get(CLAIM_KEY)
                break
            except DynamrError as exc:
                if time.monotonic() >= deadline:
                    log.warning("could not read the coordinators' claims (%s): starting anyway", exc)
                    return
                await asyncio.sleep(0.05)
        now = self.clock()
        found = rivals(merged(result.values), self.coordinator, (self.host, self.address), now)
        if found:
            raise CoordinatorConflictError(conflict_message(found, now))
        try:
            await self.renew()
        except DynamrError as exc:
            log.warning("could not write the coordinator's claim (%s): the renewals try again", exc)

    async def renew(self) -> list[Claim]:
        """Write this coordinator's claim (merging what is there) and return the rivals now live."""
        result = await self.client.get(CLAIM_KEY)
        now = self.clock()
        claims = merged(result.values)
        found = rivals(claims, self.coordinator, (self.host, self.address), now)
        if found and [c.coordinator for c in found] != [c.coordinator for c in self.rivals]:
            log.error("%s; meanwhile this coordinator accepts no job and its janitor deletes nothing",
                      conflict_message(found, now))
        elif self.rivals and not found:
            log.warning("no other coordinator claims the store any more: jobs are accepted and the janitor "
                        "runs again")
        self.rivals = found  # (what the read found stands even if the write below fails)
        await self.client.put(CLAIM_KEY, encode(renewed(claims, Claim(self.coordinator, self.address, now,
                                                                          self.every, self.host))),
                              context=result.context)
        return found

    async def renew_forever(self) -> None:
        while True:
            try:
                await self.renew()
            except DynamrError as exc:  # the store unreachable now: the next round
                log.info("could not renew the coordinator's claim: %s", exc)
            await asyncio.sleep(self.every)
