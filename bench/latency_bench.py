"""How long a small job takes on an idle cluster: the control plane's own latency, not the data's.

A local cluster of three node processes and a coordinator (default settings: workers heartbeat every
0.5 s, replication N=3) runs examples/wordcount.py over four small files in the store, again and again,
each job sent after a random pause (0 to 1 s, seeded) so that it lands at a random point of the workers'
heartbeats, as a user's job does. Each job is timed by the coordinator (submission to ``_SUCCESS``) and
its output checked. Run it at two commits (``git worktree``) to compare.

    python bench/latency_bench.py --jobs 30
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time

from smalljobs import small_jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    seconds: list[float] = []
    first: list[float] = []  # from submission to the first task's start
    with small_jobs("dynamr-latency-bench-") as cluster:
        for n in range(args.jobs):
            time.sleep(rng.uniform(0.0, 1.0))  # (a pause between jobs, not a wait for a condition)
            status = cluster.run(f"small-{n}")
            seconds.append(status.seconds)
            first.append(min(a.started for a in status.attempts) - status.started)
    print(f"machine: {platform.machine()}, Python {sys.version.split()[0]}; {args.jobs} small jobs on 3 nodes")
    for what, values in (("job", seconds), ("first task started after", first)):
        values.sort()
        print(f"{what}: median {statistics.median(values):.3f} s, 90th percentile "
              f"{values[int(0.9 * (len(values) - 1))]:.3f} s, min {values[0]:.3f} s, max {values[-1]:.3f} s")


if __name__ == "__main__":
    main()
