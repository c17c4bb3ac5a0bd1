"""Fault mixes for simulated runs: each profile turns a seed into a :class:`Scenario`."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from dynamr.mapreduce.corestate import CoreSettings
from tests.sim.world import Faults, Scenario

#: seconds between janitor rounds in the profiles whose coordinator crashes (the real default is 300 s; the
#: simulated runs last a minute or two)
JANITOR = 20.0
#: share of partial outputs that land after every sweep of their job (a write held by a paused replica)
VERY_LATE = 0.1


def quiet(seed: int) -> Scenario:
    return Scenario()


def network(seed: int) -> Scenario:
    return Scenario(faults=Faults(drop=0.1, duplicate=0.1, slow=0.1))


def chaos(seed: int) -> Scenario:
    """Everything at once, at rates drawn from the seed (some seeds mild, some brutal)."""
    rng = random.Random(seed * 7919 + 1)

    def r(top: float) -> float:
        return rng.choice([0.0, rng.uniform(0.0, top)])

    scenario = Scenario(nodes=rng.randint(1, 4), slots=rng.randint(1, 3), jobs=rng.randint(1, 3),
                        faults=Faults(drop=r(0.15), duplicate=r(0.1), slow=r(0.1), store_fail=r(0.2),
                                      store_timeout=r(0.1), user_fail=r(0.2), task_store_fail=r(0.15),
                                      node_crash=r(0.03), node_pause=r(0.02), coord_crash=r(0.02),
                                      output_loss=r(0.03), straggler=r(0.1)),
                        kill_share=rng.choice([0.0, 0.0, 0.2]))
    # drawn last, so the draws above (and the seeds pinned in test_scenarios) are unchanged: some seeds keep
    # only the newest job's whole status, so the older ones' must not be needed
    kept = rng.choice([CoreSettings().statuses_kept, 1])
    scenario = dataclasses.replace(scenario, settings=dataclasses.replace(scenario.settings, statuses_kept=kept))
    # (drawn after everything else, for the same reason) some seeds delete ended jobs and reuse their names;
    # the coordinator's janitor runs (what a crash keeps a sweep from deleting, it deletes)
    scenario = dataclasses.replace(scenario, reuse_share=rng.choice([0.0, 0.0, 0.5]), janitor=JANITOR)
    return dataclasses.replace(scenario, faults=dataclasses.replace(scenario.faults, very_late=VERY_LATE))


def crashes(seed: int) -> Scenario:
    """Commit writes that often lose their answers, a coordinator that dies every 12 s or so, paused nodes,
    stragglers and kills: where the cleanup of one incarnation meets the restart of the next."""
    return Scenario(jobs=2, faults=Faults(store_timeout=0.2, coord_crash=0.08, node_pause=0.02, straggler=0.1,
                                          very_late=VERY_LATE), kill_share=0.3, janitor=JANITOR)


def crashes_reuse(seed: int) -> Scenario:
    """As ``crashes``, and every job, once ended, deleted and its name reused."""
    return dataclasses.replace(crashes(seed), reuse_share=1.0)


def chaos_combined(seed: int) -> Scenario:
    """As ``chaos``, with half the jobs' input files packed into one map task."""
    return dataclasses.replace(chaos(seed), combined_share=0.5)


PROFILES: dict[str, Callable[[int], Scenario]] = {"quiet": quiet, "network": network, "chaos": chaos,
                                                  "crashes": crashes, "crashes-reuse": crashes_reuse,
                                                  "chaos-combined": chaos_combined}


def scenario_for(profile: str, seed: int) -> Scenario:
    return PROFILES[profile](seed)
