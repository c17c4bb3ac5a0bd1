"""Whether a long-lived cluster's processes grow with the jobs they run: many small jobs, memory sampled.

A local cluster of three node processes and a coordinator (default settings) runs examples/wordcount.py
over four small files again and again, each job's output checked and then deleted (with ``DeleteJob``, as
``dynamr delete`` does), so the store holds no more data at the end than at the start. Every ``--every`` jobs
it reads each process's anonymous resident memory (``RssAnon`` in ``/proc/PID/status``: the Python heap,
not the store's memory-mapped file). A process that holds something per job shows a steady climb; one that
does not levels off once its caches and allocator arenas are warm. The last column is the growth per job
over the second half of the run, where warm-up is over.

    python bench/leak_bench.py --jobs 600 --every 100
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

from dynamr.config import StoreSettings
from dynamr.files.client import FileSystem
from dynamr.localcluster import LocalCluster
from dynamr.mapreduce.submit import JobClient, build_plan
from dynamr.store.client import Client

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "examples" / "wordcount.py"


def rss_anon(pid: int) -> int:
    """KiB of anonymous resident memory of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise SystemExit(f"no RssAnon for process {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--every", type=int, default=100)
    args = parser.parse_args()
    names = ["coordinator", "n1", "n2", "n3"]
    samples: list[tuple[int, list[int]]] = []
    with tempfile.TemporaryDirectory(prefix="dynamr-leak-bench-") as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for i in range(4):
            (folder / f"f{i}.txt").write_text(f"alpha beta gamma {i}\n" * 50)
        cluster = LocalCluster.create(Path(tmp) / "cluster", 3, StoreSettings(), ephemeral=True)
        cluster.start()
        try:
            pids = [cluster.pid(name) for name in names]
            if None in pids:
                raise SystemExit(f"a process of the cluster is not running: {dict(zip(names, pids, strict=True))}")
            with Client(cluster.seeds, cluster.secret, timeout=60) as client:
                fs = FileSystem(client.async_client)
                client.run(fs.put_tree(folder, "/in"))
                jobs = JobClient(client.async_client)
                for n in range(args.jobs + 1):
                    if n % args.every == 0:
                        samples.append((n, [rss_anon(pid) for pid in pids if pid is not None]))
                        print(f"{n:>6} jobs: " + ", ".join(f"{name} {kib / 1024:.1f} MiB"
                                                          for name, kib in zip(names, samples[-1][1], strict=True)),
                              flush=True)
                    if n == args.jobs:
                        break
                    name = f"small-{n}"
                    plan = client.run(build_plan(fs, name, JOB, ["/in"], f"/out/{name}", local=False, reducers=2))
                    client.run(jobs.submit(name, plan, JOB.read_bytes()))
                    status = client.run(jobs.wait(name))
                    if status.state != "succeeded":
                        raise SystemExit(f"job {name} {status.state}: {status.error}")
                    parts = [e.name for e in client.run(fs.ls(f"/out/{name}")) if e.name.startswith("part-")]
                    output = b"".join(client.run(fs.read_bytes(f"/out/{name}/{part}")) for part in parts)
                    if output.count(b"\n") != 7:  # alpha, beta, gamma and the four numbers
                        raise SystemExit(f"job {name} wrote {output!r}")
                    client.run(fs.rm(f"/out/{name}", recursive=True))
                    client.run(jobs.delete(name))
        finally:
            cluster.stop()
    half = samples[len(samples) // 2]
    last = samples[-1]
    print(f"machine: {platform.machine()}, Python {sys.version.split()[0]}; {args.jobs} small jobs on 3 nodes")
    print("process       start    middle      end   growth per job, second half")
    for i, name in enumerate(names):
        per_job = (last[1][i] - half[1][i]) / max(1, last[0] - half[0])
        print(f"{name:<12}{samples[0][1][i] / 1024:>7.1f}M{half[1][i] / 1024:>9.1f}M{last[1][i] / 1024:>8.1f}M"
              f"{per_job:>12.1f} KiB")


if __name__ == "__main__":
    main()
