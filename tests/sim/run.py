"""Run or replay simulated seeds: ``python -m tests.sim.run --seed 17`` prints that seed's whole trace;
``--seeds 0:2000`` runs a range and lists the violations. ``--profile`` picks a fault mix (see PROFILES)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import Protocol

from tests.sim.scenarios import PROFILES, scenario_for
from tests.sim.world import World


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, help="replay one seed and print its trace")
    parser.add_argument("--seeds", default="0:200", help="a range start:end of seeds to run")
    parser.add_argument("--profile", default="chaos", choices=sorted(PROFILES))
    args = parser.parse_args(argv)
    logging.disable(logging.CRITICAL)  # the core logs every fault it handles: millions of lines
    try:
        return _run(args)
    finally:
        logging.disable(logging.NOTSET)


def _run(args: argparse.Namespace) -> int:
    return replay_or_run(lambda seed: World(seed, scenario_for(args.profile, seed)), args.seed, args.seeds,
                         args.profile)


class Simulated(Protocol):
    trace: list[str]

    def run(self) -> Simulated: ...

    def check(self) -> None: ...


def replay_or_run(make: Callable[[int], Simulated], seed: int | None, seeds: str, label: str) -> int:
    """Replay ``seed`` printing its trace, or run the range ``seeds`` ("start:end") listing every violation
    (a crash of the state machines is one too); 1 if any seed broke an invariant."""
    if seed is not None:
        world = make(seed)
        try:
            world.run().check()
        finally:
            print("\n".join(world.trace))
        print(f"seed {seed}: no violation")
        return 0
    start, end = (int(x) for x in seeds.split(":"))
    began = time.monotonic()
    failed = []
    for number in range(start, end):
        try:
            make(number).run().check()
        except AssertionError as exc:  # a Violation
            failed.append(number)
            print(str(exc).splitlines()[0], file=sys.stderr)
        except Exception as exc:  # a crash of the state machines is a violation too
            failed.append(number)
            print(f"seed {number}: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(f"{end - start} seeds ({label}) in {time.monotonic() - began:.1f}s: "
          f"{len(failed)} violation(s) {failed[:20]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
