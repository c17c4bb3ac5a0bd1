"""The coordinator's janitor: intermediate data and commit records in the store that no job needs, deleted.

Each job's own sweeps (at its end, and ``late_write_grace`` later) delete what its attempts wrote. What
lands after them (a write held by a paused replica, a task cut off from everyone that finished late) is
found here: every ``job_janitor_interval`` seconds the janitor scans every replica's intermediate keys and
deletes those whose attempt no job needs (:meth:`~dynamr.mapreduce.control.CoordinatorCore.needs`), and
the commit records of jobs no longer running (with the context read: a concurrent write stays).

It only knows this coordinator's jobs, so it deletes nothing while another coordinator claims the store
(:mod:`dynamr.mapreduce.claims`): it renews the claim and looks before it scans, and looks again (the
claim's own renewals run meanwhile) before it deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

from dynamr.errors import BadRequestError, DynamrError
from dynamr.files.client import FileSystem
from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce.claims import ClaimKeeper
from dynamr.mapreduce.control import CoordinatorCore
from dynamr.store.client import AsyncClient

log = logging.getLogger(__name__)


class Janitor:
    def __init__(self, client: AsyncClient, fs: FileSystem, core: CoordinatorCore, claims: ClaimKeeper,
                 interval: float) -> None:
        self.client, self.fs, self.core, self.claims = client, fs, core, claims
        #: seconds between rounds; 0: no rounds
        self.interval = interval
        #: objects and commit records deleted since the coordinator started
        self.deleted = [0, 0]
        #: rounds by outcome: "done", or "paused" (another coordinator claims the store)
        self.rounds: Counter[str] = Counter()

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.round()
            except DynamrError as exc:  # a node that cannot be scanned now: the next round
                log.info("the janitor's round stopped: %s", exc)
            except Exception:  # a bug must not stop it for good
                log.exception("the janitor's round failed")

    async def round(self) -> int:
        """One round (see the module); returns how many keys it deleted."""
        if await self.claims.renew():
            self.rounds["paused"] += 1
            return 0
        objects, records = set(), set()
        async for _, key, _ in self.client.scan_replicas(im.OBJECTS.encode(), values=False):
            owner = im.object_owner(key)
            if owner is not None and not self.core.needs(*owner):
                objects.add(key)
        async for _, key, _ in self.client.scan_replicas(im.PREFIX.encode(), values=False):
            owner = im.commit_owner(key)
            if owner is not None and owner[0] not in self.core.jobs:
                records.add((key, owner[0]))
        if self.claims.rivals:  # (renewed by the claim's own loop while the scan ran)
            self.rounds["paused"] += 1
            return 0
        self.rounds["done"] += 1
        deleted = [0, 0]
        for key in sorted(objects):
            deleted[0] += await self.fs.delete_object(key)
        for key, job in sorted(records):
            result = await self.client.get(key)
            with contextlib.suppress(BadRequestError):  # not a commit record: left alone
                attempts = [im.Commit.decode(v).attempt for v in result.values]
                if attempts and not any(self.core.needs(job, a) for a in attempts):
                    await self.client.delete(key, context=result.context)
                    deleted[1] += 1
        if any(deleted):
            log.warning("the janitor deleted %d intermediate object(s) and %d commit record(s) no job needs",
                        *deleted)
            self.deleted = [a + b for a, b in zip(self.deleted, deleted, strict=True)]
        return sum(deleted)
