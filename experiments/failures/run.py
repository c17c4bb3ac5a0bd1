"""Seeds 001 and 003 on dynamr: a node killed (kill -9) at each of seed 001's four failure levels, against
an undisturbed run, with the tasks each failure made run again.

    python experiments/failures/run.py            # 3 nodes, about 4 minutes on 2 cores
    python experiments/failures/run.py --quick    # smaller input: checks the outputs and the key result (CI)

The levels: a map node during the map phase, a reduce node during the reduce phase, a map node during the
reduce phase (a node that ran maps and runs no reduce), and the coordinator during the map phase (it is
started again at once). dynamr keeps map outputs in the replicated store, so a lost node's committed maps
are not run again; for comparison, the runner also counts, from the same task records, the maps that would
have run again had their outputs been kept only on the node that made them (seed 001's design). Writes
results.csv, results.json and failures.png beside this file (or in --out).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (
    MB,
    arguments,
    cluster,
    generate_text,
    machine,
    read_counts,
    save,
    sequential_count,
    upload,
    write_rows,
)

from dynamr.client import Client
from dynamr.files.client import FileSystem
from dynamr.localcluster import COORDINATOR, LocalCluster
from dynamr.mapreduce.submit import JobClient, build_plan
from dynamr.rpc import messages as m

HERE = Path(__file__).resolve().parent
JOB = HERE / "slow_wordcount.py"
LEVELS = ("none", "map node during map", "reduce node during reduce", "map node during reduce",
          "coordinator during map")
SETTINGS = {"worker_timeout": 2.0, "worker_heartbeat": 0.2, "heartbeat_interval": 0.2, "failure_timeout": 1.0,
            "speculative_execution": False}


def is_map(task: str) -> bool:
    return "-m" in task.rsplit("/", 1)[-1]


def status_of(local: LocalCluster, name: str) -> m.JobStatusView:
    with Client(local.seeds, local.secret, timeout=30) as client:
        status: m.JobStatusView = client.run(JobClient(client.async_client).status(name))
        return status


def victim(level: str, status: m.JobStatusView) -> str | None:
    """The process to kill now for ``level``, or None while the job is not yet where the level needs it."""
    running = status.running_attempts
    if level == "coordinator during map":
        return COORDINATOR if any(is_map(a.task) for a in running) and status.maps_done >= 1 else None
    if level == "map node during map":
        done = {a.node for a in status.attempts if a.ok and is_map(a.task)}
        busy = [a.node for a in running if is_map(a.task) and a.node in done]  # it holds committed maps too
        return busy[0] if busy else None
    reducing = {a.node for a in running if not is_map(a.task)}
    if not reducing or status.maps_done < status.maps:
        return None
    if level == "reduce node during reduce":
        return sorted(reducing)[0]
    mapped = {a.node for a in status.attempts if a.ok and is_map(a.task)}
    idle = sorted(mapped - reducing)
    return idle[0] if idle else None


def run_level(local: LocalCluster, level: str, name: str, inputs: str, reducers: int, split: int,
              options: dict[str, str]) -> tuple[m.JobStatusView, float, str, float]:
    """Run the job, killing the level's victim once the job is where the level needs it; the final status,
    the job's seconds, whom it killed, and when (seconds after submission)."""
    with Client(local.seeds, local.secret, timeout=60) as client:
        plan = client.run(build_plan(FileSystem(client.async_client), name, JOB, [inputs], f"/out/{name}",
                                     local=False, reducers=reducers, split_size=split, options=options))
        start = time.perf_counter()
        client.run(JobClient(client.async_client).submit(name, plan, JOB.read_bytes()))
    killed, at = "", 0.0
    if level != "none":
        deadline = time.monotonic() + 120
        while not killed:
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: the job never reached the point where '{level}' kills")
            target = victim(level, status_of(local, name))
            if target is None:
                time.sleep(0.05)
                continue
            local.kill_node(target)
            killed, at = target, time.perf_counter() - start
            if target == COORDINATOR:
                local.start([COORDINATOR])
    final = _wait(local, name)
    return final, time.perf_counter() - start, killed, at


def _wait(local: LocalCluster, name: str) -> m.JobStatusView:
    with Client(local.seeds, local.secret, timeout=60) as client:
        status: m.JobStatusView = client.run(JobClient(client.async_client).wait(name, interval=0.05))
    if status.state != "succeeded":
        raise SystemExit(f"job {name} {status.state}: {status.error}")
    return status


def reruns(status: m.JobStatusView, killed: str) -> tuple[int, int, int]:
    """(map attempts beyond one per map task, reduce attempts beyond one per reduce task, maps that would
    have run again had map outputs lived only on the node that made them)."""
    per_task: dict[str, list[m.AttemptView]] = {}
    for attempt in status.attempts:
        per_task.setdefault(attempt.task, []).append(attempt)
    extra_maps = sum(len(a) - 1 for t, a in per_task.items() if is_map(t))
    extra_reduces = sum(len(a) - 1 for t, a in per_task.items() if not is_map(t))
    # node-local intermediate data: every map whose output was on the killed node runs again (unless it
    # ran again anyway, counted above)
    local_only = extra_maps + sum(1 for t, a in per_task.items()
                                  if is_map(t) and any(x.ok and x.node == killed for x in a))
    return extra_maps, extra_reduces, local_only


def measure(size: float, nodes: int, reducers: int, split: int, options: dict[str, str], data: Path,
            work: Path) -> list[dict[str, object]]:
    files = generate_text(data / f"text-{size:g}MB", int(size * MB))
    reference, _ = sequential_count(files)
    rows: list[dict[str, object]] = []
    for index, level in enumerate(LEVELS):
        # a fresh cluster for each level: a killed node stays dead for the rest of its run
        with cluster(work / f"level{index}", nodes, 1, **SETTINGS) as local:
            upload(local, files, "/in")
            name = f"level{index}"
            status, seconds, killed, at = run_level(local, level, name, "/in", reducers, split, options)
            if read_counts(local, f"/out/{name}") != reference:
                raise SystemExit(f"{name} ({level}): the output differs from the sequential count")
        extra_maps, extra_reduces, local_only = reruns(status, killed)
        row = {"level": level, "killed": killed or "-", "killed_at_s": round(at, 2), "seconds": round(seconds, 2),
               "map_tasks": status.maps, "reduce_tasks": status.reduces, "maps_rerun": extra_maps,
               "reduces_rerun": extra_reduces, "maps_rerun_if_node_local": local_only, "output_checked": True}
        rows.append(row)
        print(row, flush=True)
    return rows


def plot(rows: list[dict[str, object]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(r["level"]).replace(" during ", "\nduring ") for r in rows]
    xs = range(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    base = float(str(rows[0]["seconds"]))
    left.bar(xs, [float(str(r["seconds"])) for r in rows], color=["#98a2b3"] + ["#d9534f"] * (len(rows) - 1))
    left.axhline(base, color="black", linestyle=":", linewidth=1, label="undisturbed")
    left.set_xticks(list(xs), labels, fontsize=8)
    left.set(ylabel="job seconds", title="Job time with one process killed (kill -9)")
    left.legend()
    width = 0.38
    right.bar([x - width / 2 for x in xs], [int(str(r["maps_rerun"])) for r in rows], width,
              label="dynamr (map outputs in the store), measured", color="#2e9d57")
    right.bar([x + width / 2 for x in xs], [int(str(r["maps_rerun_if_node_local"])) for r in rows], width,
              label="map outputs only on their node, counted from the same runs", color="#d99a1e")
    right.set_xticks(list(xs), labels, fontsize=8)
    right.set(ylabel="map attempts run again", title="Maps run again")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.grid(alpha=0.3, axis="y")
    save(fig, path, title)


def main() -> None:
    parser = arguments(__doc__, HERE)
    parser.add_argument("--size", type=float, default=32, help="MB of text")
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    size = 2 if args.quick else args.size
    split = 256 * 1024 if args.quick else 4 * MB
    options = {"MAP_SECONDS": "0.5", "REDUCE_SECONDS": "2"} if args.quick else {"MAP_SECONDS": "1",
                                                                                "REDUCE_SECONDS": "4"}
    with tempfile.TemporaryDirectory(prefix="dynamr-failures-") as work:
        rows = measure(size, args.nodes, args.nodes - 1, split, options, args.data, Path(work))
    write_rows(args.out, "results", rows)
    plot(rows, args.out / "failures.png", f"slowed word count of {size:g} MB on {args.nodes} nodes x 1 slot, "
         f"{args.nodes - 1} reducers; {machine()}")
    print(f"wrote {args.out / 'results.csv'} and {args.out / 'failures.png'}")


if __name__ == "__main__":
    main()
