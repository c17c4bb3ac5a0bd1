"""Whether a long-lived cluster's processes grow with the jobs they run: many small jobs, memory sampled.

A local cluster of three node processes and a coordinator (default settings) runs examples/wordcount.py
over four small files again and again, each job's output checked and then deleted (with ``DeleteJob``, as
``dynamr delete`` does), so the store holds no more data at the end than at the start. Every ``--every`` jobs
it reads each process's anonymous resident memory (``RssAnon`` in ``/proc/PID/status``: the Python heap,
not the store's memory-mapped file). A process that holds something per job shows a steady climb; one that
does not levels off once its caches and allocator arenas are warm. The last column is the growth per job
over the second half of the run, where warm-up is over. It also counts each process's open file
descriptors at the start and at the end (a descriptor kept per task process or connection shows there).

    python bench/leak_bench.py --jobs 600 --every 100
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

from smalljobs import small_jobs


def rss_anon(pid: int) -> int:
    """KiB of anonymous resident memory of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise SystemExit(f"no RssAnon for process {pid}")


def open_fds(pid: int) -> int:
    """How many file descriptors process ``pid`` holds open."""
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    names = ["coordinator", "n1", "n2", "n3"]
    samples: list[tuple[int, list[int]]] = []
    fds: list[list[int]] = []
    with small_jobs("dynamr-leak-bench-") as cluster:
        pids = [cluster.cluster.pid(name) for name in names]
        if None in pids:
            raise SystemExit(f"a process of the cluster is not running: {dict(zip(names, pids, strict=True))}")
        for n in range(args.jobs + 1):
            if n % args.every == 0:
                samples.append((n, [rss_anon(pid) for pid in pids if pid is not None]))
                fds.append([open_fds(pid) for pid in pids if pid is not None])
                print(f"{n:>6} jobs: " + ", ".join(f"{name} {kib / 1024:.1f} MiB"
                                                  for name, kib in zip(names, samples[-1][1], strict=True)),
                      flush=True)
            if n == args.jobs:
                break
            name = f"small-{n}"
            cluster.run(name)
            cluster.client.run(cluster.fs.rm(f"/out/{name}", recursive=True))
            cluster.client.run(cluster.jobs.delete(name))
    half = samples[len(samples) // 2]
    last = samples[-1]
    print(f"machine: {platform.machine()}, Python {sys.version.split()[0]}; {args.jobs} small jobs on 3 nodes")
    print("process       start    middle      end   growth per job, second half   open files: start  end")
    for i, name in enumerate(names):
        per_job = (last[1][i] - half[1][i]) / max(1, last[0] - half[0])
        print(f"{name:<12}{samples[0][1][i] / 1024:>7.1f}M{half[1][i] / 1024:>9.1f}M{last[1][i] / 1024:>8.1f}M"
              f"{per_job:>12.1f} KiB{fds[0][i]:>26}{fds[-1][i]:>5}")


if __name__ == "__main__":
    main()
