"""Soak the control plane in the simulator: many seeds of the chaos profile, spread over processes.

    python bench/sim_soak.py --seeds 100000 --procs 2

Prints how long it took and every violating seed (replay one with ``python -m tests.sim.run --seed N``).
Run from the project's root (the simulator lives in ``tests/sim``).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.sim.scenarios import PROFILES, scenario_for
from tests.sim.world import World


def run_range(args: tuple[str, int, int]) -> list[tuple[int, str]]:
    profile, start, end = args
    logging.disable(logging.CRITICAL)
    bad = []
    for seed in range(start, end):
        try:
            World(seed, scenario_for(profile, seed)).run().check()
        except Exception as exc:  # a violation, or a crash of the state machines
            bad.append((seed, str(exc).splitlines()[0]))
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10000)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--profile", default="chaos", choices=sorted(PROFILES))
    args = parser.parse_args()
    step = 500
    ranges = [(args.profile, s, min(s + step, args.first + args.seeds))
              for s in range(args.first, args.first + args.seeds, step)]
    began = time.monotonic()
    bad: list[tuple[int, str]] = []
    with multiprocessing.Pool(args.procs) as pool:
        for done, found in enumerate(pool.imap_unordered(run_range, ranges), 1):
            bad += found
            for seed, text in found:
                print(f"VIOLATION seed {seed}: {text}", flush=True)
            if done % 20 == 0:
                print(f"{done * step} seeds, {time.monotonic() - began:.0f}s, {len(bad)} violation(s)", flush=True)
    took = time.monotonic() - began
    for seed, text in sorted(bad):
        print(f"seed {seed}: {text}")
    print(f"{args.seeds} seeds ({args.profile}, {args.procs} processes) in {took:.0f}s "
          f"({took / args.seeds * 1000:.1f} ms a seed): {len(bad)} violation(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
