"""What a job of many small tasks costs on a local cluster, with task processes forked from the zygote or
started as new interpreters (``task_zygote``).

Three nodes and a coordinator on this machine (default settings); the in-mapper word count over a text
corpus cut into small splits (16 MB in 256 KiB splits: about 100 map tasks). For each setting in turn
(alternating, ``--rounds`` times), a fresh cluster runs the job twice; the second run is timed (the first
one's idle processes and spares are then in place, as on a cluster in use). Reported: the job's time from
submission to success, and the CPU seconds the cluster's processes spent meanwhile (from /proc), by kind,
with the task processes that ended counted through their parent (node or zygote), and the whole machine's
busy CPU seconds (run it on an otherwise idle machine).

    python bench/cluster_tasks_bench.py --rounds 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mr_bench import generate_text, parse_size

from dynamr.config import StoreSettings
from dynamr.files.client import FileSystem
from dynamr.localcluster import LocalCluster
from dynamr.mapreduce.submit import JobClient, build_plan
from dynamr.store.client import Client

JOB = Path(__file__).resolve().parent.parent / "examples" / "wordcount_inmapper.py"
TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_kind() -> dict[str, float]:
    """CPU seconds so far of every dynamr process on the machine: nodes, coordinator, task processes."""
    out: dict[str, float] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if "dynamr" not in cmd:
            continue
        kind = ("node" if "node start" in cmd else "coordinator" if "coordinator start" in cmd
                else "task processes" if "mapreduce" in cmd else "")
        if kind:
            out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
            # what a node or a zygote has reaped: task processes that ended (their CPU counts only there)
            out["task processes"] = out.get("task processes", 0.0) + (int(fields[13]) + int(fields[14])) / TICK
    out["machine"] = machine_cpu()
    return out


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (the other columns should account for most of it)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / TICK


def one(zygote: bool, corpus: Path, split: int, work: Path) -> tuple[float, dict[str, float], int]:
    cluster = LocalCluster.create(work / f"cluster-{zygote}-{time.monotonic_ns()}", 3,
                                  StoreSettings(task_zygote=zygote), ephemeral=True)
    cluster.start()
    try:
        with Client(cluster.seeds, cluster.secret, timeout=60) as client:
            fs = FileSystem(client.async_client)
            client.run(fs.put_tree(corpus, "/in"))
            jobs = JobClient(client.async_client)
            for run in range(2):
                name = f"wc{run}"
                plan = client.run(build_plan(fs, name, JOB, ["/in"], f"/out/{name}", local=False, reducers=2,
                                             split_size=split))
                before = cpu_by_kind()
                started = time.perf_counter()
                client.run(jobs.submit(name, plan, JOB.read_bytes()))
                status = client.run(jobs.wait(name))
                seconds = time.perf_counter() - started
                after = cpu_by_kind()
                if status.state != "succeeded":
                    raise SystemExit(f"job {name} {status.state}: {status.error}")
            cpu = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
            return seconds, cpu, status.maps
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="16M")
    parser.add_argument("--split-size", default="256K")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dynamr-tasks-bench-") as tmp:
        work = Path(tmp)
        generate_text(work / "in", parse_size(args.size))
        print(f"{'task processes':<16}{'job':>8}{'maps':>6}{'CPU: tasks':>12}{'nodes':>8}{'coord.':>8}{'total':>8}"
              f"{'machine':>9}")
        for _ in range(args.rounds):
            for zygote in (False, True):
                seconds, cpu, maps = one(zygote, work / "in", parse_size(args.split_size), work)
                tasks, nodes, coord, machine = (cpu.get(k, 0.0) for k in ("task processes", "node", "coordinator",
                                                                          "machine"))
                print(f"{'forked' if zygote else 'interpreters':<16}{seconds:>7.2f}s{maps:>6}{tasks:>11.2f}s"
                      f"{nodes:>7.2f}s{coord:>7.2f}s{tasks + nodes + coord:>7.2f}s{machine:>8.2f}s", flush=True)


if __name__ == "__main__":
    main()
