"""Seed 001's Table III on dynamr: a word count's map phase and total time for 1, 2, 3 and 4 worker nodes
on about 5, 10, 100 and 250 MB of text, each output checked against a sequential count.

    python experiments/scaling/run.py            # the default sizes, about 6 minutes on 2 cores
    python experiments/scaling/run.py --quick    # 1 and 2 MB on 1 and 2 nodes: checks correctness only

Writes results.csv, results.json and scaling.png beside this file (or in --out).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (
    MB,
    WORDCOUNT,
    arguments,
    cluster,
    cluster_cpu,
    generate_text,
    machine,
    map_phase,
    read_counts,
    run_job,
    save,
    sequential_count,
    upload,
    write_rows,
)

HERE = Path(__file__).resolve().parent
TITLE = "word count on dynamr, {split:g} MB splits, input and output on the store; {machine}"


def measure(sizes: list[float], nodes: list[int], slots: int, split_size: int, data: Path, work: Path,
            repeats: int) -> list[dict[str, object]]:
    corpora = {size: generate_text(data / f"text-{size:g}MB", int(size * MB)) for size in sizes}
    references = {size: sequential_count(files) for size, files in corpora.items()}
    rows: list[dict[str, object]] = []
    for k in nodes:
        with cluster(work / f"nodes{k}", k, slots) as local:
            for size, files in corpora.items():
                upload(local, files, f"/in/{size:g}")
                reference, sequential = references[size]
                totals, maps, cpus, slots_busy = [], [], [], []
                for repeat in range(repeats):
                    name = f"wc-{size:g}MB-{k}n-{repeat}"
                    before = cluster_cpu(local)
                    status, seconds = run_job(local, name, WORDCOUNT, [f"/in/{size:g}"], f"/out/{name}",
                                              reducers=k * slots, split_size=split_size)
                    cpus.append(cluster_cpu(local) - before)
                    if read_counts(local, f"/out/{name}") != reference:
                        raise SystemExit(f"{name}: the output differs from the sequential count")
                    map_seconds, busy = map_phase(status)
                    totals.append(seconds)
                    maps.append(map_seconds)
                    slots_busy.append(busy)
                row = {"size_mb": size, "bytes": sum(f.stat().st_size for f in files), "nodes": k,
                       "split_kb": split_size // 1024,
                       "slots_per_node": slots, "map_tasks": status.maps,
                       "total_s": round(statistics.median(totals), 3),
                       "map_phase_s": round(statistics.median(maps), 3),
                       "cpu_s_per_mb": round(statistics.median(cpus) / size, 4),
                       "slot_s_per_mb": round(statistics.median(slots_busy) / size, 4),
                       "sequential_s": round(sequential, 3), "output_checked": True}
                rows.append(row)
                print(row, flush=True)
    return rows


def plot(rows: list[dict[str, object]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({float(str(r["size_mb"])) for r in rows})
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.6))
    for size in sizes:
        mine = sorted((r for r in rows if float(str(r["size_mb"])) == size), key=lambda r: int(str(r["nodes"])))
        xs = [int(str(r["nodes"])) for r in mine]
        total = [float(str(r["total_s"])) for r in mine]
        line, = left.plot(xs, total, marker="o", label=f"{size:g} MB")
        left.plot(xs, [float(str(r["map_phase_s"])) for r in mine], marker="x", linestyle="--",
                  color=line.get_color())
        middle.plot(xs, [total[0] / t for t in total], marker="o", color=line.get_color(), label=f"{size:g} MB")
        right.plot(xs, [float(str(r["cpu_s_per_mb"])) for r in mine], marker="o", color=line.get_color(),
                   label=f"{size:g} MB")
    nodes = sorted({int(str(r["nodes"])) for r in rows})
    middle.plot(nodes, nodes, color="grey", linestyle=":", label="ideal")
    middle.axhline(2, color="black", linewidth=0.8, linestyle="-.", label="2 cores")
    left.set(xlabel="worker nodes (1 task slot each)", ylabel="seconds",
             title="Job time (solid) and map phase (dashed)")
    middle.set(xlabel="worker nodes", ylabel="speed-up over 1 node", title="Speed-up")
    right.set(xlabel="worker nodes", ylabel="CPU-seconds per MB", title="CPU per MB (all of the cluster's processes)")
    for axis in (left, middle, right):
        axis.set_xticks(nodes)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    save(fig, path, title)


def main() -> None:
    parser = arguments(__doc__, HERE)
    parser.add_argument("--sizes", default="5,10,100,250", help="MB of text, comma-separated")
    parser.add_argument("--nodes", default="1,2,3,4", help="worker node counts, comma-separated")
    parser.add_argument("--slots", type=int, default=1, help="task slots per node")
    parser.add_argument("--split-size", type=int, default=4 * MB, help="bytes per map task")
    parser.add_argument("--repeats", type=int, default=1, help="runs per point (the median is kept)")
    parser.add_argument("--replot", action="store_true", help="only draw the figure again from results.json")
    args = parser.parse_args()
    if args.replot:
        rows = json.loads((args.out / "results.json").read_text())
        split_mb = int(str(rows[0]["split_kb"])) * 1024 / MB
        plot(rows, args.out / "scaling.png", TITLE.format(split=round(split_mb, 1), machine=machine()))
        return
    sizes = [1.0, 2.0] if args.quick else [float(s) for s in args.sizes.split(",")]
    nodes = [1, 2] if args.quick else [int(n) for n in args.nodes.split(",")]
    split = 256 * 1024 if args.quick else args.split_size
    with tempfile.TemporaryDirectory(prefix="dynamr-scaling-") as work:
        rows = measure(sizes, nodes, args.slots, split, args.data, Path(work), args.repeats)
    write_rows(args.out, "results", rows)
    plot(rows, args.out / "scaling.png", TITLE.format(split=round(split / MB, 2), machine=machine()))
    print(f"wrote {args.out / 'results.csv'} and {args.out / 'scaling.png'}")


if __name__ == "__main__":
    main()
