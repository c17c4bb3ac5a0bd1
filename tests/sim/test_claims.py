"""Coordinators' claims in the seeded simulation (tests/sim/claims.py): the real ClaimKeeper over a register
that keeps siblings, lossy and late writes, skewed clocks; replay a seed with
``python -m tests.sim.claims --seed N``."""

from __future__ import annotations

import pytest

from dynamr.mapreduce import claims
from dynamr.mapreduce.claims import Claim
from tests.sim.claims import main


def test_fifteen_hundred_seeds_break_no_invariant_of_the_claims() -> None:
    assert main(["--seeds", "0:1500"]) == 0


def test_the_simulation_finds_a_keeper_that_takes_an_address_for_a_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks can fail: with the host left out of a claim's place (as before 9f69634), two coordinators
    at one address on two hosts do not see each other."""
    monkeypatch.setattr(Claim, "place", property(lambda c: ("", c.address)))
    assert main(["--seeds", "0:300"]) == 1


def test_the_simulation_finds_a_start_check_that_writes_no_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    """...and without the claim written at the start check (as before c81e358), one that starts while another
    recovers its jobs is not refused."""
    async def check_without_claiming(self: claims.ClaimKeeper, budget: float = claims.CHECK_SECONDS) -> None:
        result = await self.client.get(claims.CLAIM_KEY)
        now = self.clock()
        found = claims.rivals(claims.merged(result.values), self.coordinator, (self.host, self.address), now)
        if found:
            raise claims.CoordinatorConflictError(claims.conflict_message(found, now))

    monkeypatch.setattr(claims.ClaimKeeper, "check", check_without_claiming)
    assert main(["--seeds", "2000:3000"]) == 1
