"""Seed 004's unevenness experiment on dynamr: four input files in the ratio a, b, a+b, a+2b (a = 1, and
a+2b = the unevenness score, from 4, nearly even, to 500), counted with one split per file, or cut into
byte-range splits of several sizes. The median time of several runs per point; every output checked.

    python experiments/uneven/run.py            # 32 MB per point, 3 runs: about 9 minutes on 2 cores
    python experiments/uneven/run.py --quick    # 2 MB, scores 4 and 500, one run: checks correctness

The coordinator hands out a phase's largest splits first, so with two task slots (this machine's two
cores) one split per file already keeps both slots busy (see README.md); smaller splits only add per-task
cost at this size. Writes results.csv, results.json and uneven.png beside this file (or in --out).
"""

from __future__ import annotations

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
    generate_text,
    machine,
    read_counts,
    run_job,
    save,
    sequential_count,
    upload,
    write_rows,
)

HERE = Path(__file__).resolve().parent
SCORES = [4, 15, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500]


def weights(score: int) -> list[float]:
    """The four files' sizes relative to each other: a, b, a+b, a+2b with a = 1 and a+2b = score."""
    a, b = 1.0, (score - 1) / 2
    return [a, b, a + b, a + 2 * b]


def measure(scores: list[int], chunks: list[int], total: int, runs: int, nodes: int, slots: int, data: Path,
            work: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with cluster(work, nodes, slots) as local:
        for score in scores:
            files = generate_text(data / f"uneven-{score}-{total}", total, seed=score, weights=weights(score))
            reference, _ = sequential_count(files)
            upload(local, files, f"/uneven/{score}")
            largest = max(f.stat().st_size for f in files)
            for chunk in chunks:
                split = chunk or largest + 1  # 0: one split per file
                seconds = []
                for run in range(runs):
                    name = f"uneven-{score}-{chunk}-{run}"
                    status, took = run_job(local, name, WORDCOUNT, [f"/uneven/{score}"], f"/out/{name}",
                                           reducers=nodes * slots, split_size=split)
                    if run == 0 and read_counts(local, f"/out/{name}") != reference:
                        raise SystemExit(f"{name}: the output differs from the sequential count")
                    seconds.append(took)
                row = {"score": score, "chunk_bytes": chunk, "map_tasks": status.maps,
                       "largest_file_share": round(largest / sum(f.stat().st_size for f in files), 3),
                       "median_s": round(statistics.median(seconds), 3), "runs": runs,
                       "all_s": " ".join(f"{s:.3f}" for s in seconds), "output_checked": True}
                rows.append(row)
                print(row, flush=True)
    return rows


def plot(rows: list[dict[str, object]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(8, 4.8))
    for chunk in sorted({int(str(r["chunk_bytes"])) for r in rows}):
        mine = sorted((r for r in rows if int(str(r["chunk_bytes"])) == chunk), key=lambda r: int(str(r["score"])))
        label = "one split per file" if chunk == 0 else f"{chunk / MB:g} MB splits"
        axis.plot([int(str(r["score"])) for r in mine], [float(str(r["median_s"])) for r in mine], marker="o",
                  label=label)
    axis.set(xlabel="unevenness score (a+2b with a = 1)", ylabel="median seconds (job)")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend()
    save(fig, path, title)


def main() -> None:
    parser = arguments(__doc__, HERE)
    parser.add_argument("--size", type=float, default=32, help="MB of text per unevenness score")
    parser.add_argument("--chunks", default="0,1,4,16", help="split sizes in MB (0: one split per file)")
    parser.add_argument("--runs", type=int, default=3, help="runs per point (the median is plotted)")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--slots", type=int, default=1, help="task slots per node")
    args = parser.parse_args()
    scores = [4, 500] if args.quick else SCORES
    chunks = [0, 256 * 1024] if args.quick else [int(float(c) * MB) for c in args.chunks.split(",")]
    total = 2 * MB if args.quick else int(args.size * MB)
    runs = 1 if args.quick else args.runs
    with tempfile.TemporaryDirectory(prefix="dynamr-uneven-") as work:
        rows = measure(scores, chunks, total, runs, args.nodes, args.slots, args.data, Path(work))
    write_rows(args.out, "results", rows)
    plot(rows, args.out / "uneven.png", f"word count of {total / MB:g} MB in 4 files, {args.nodes} nodes x "
         f"{args.slots} slot; {machine()}")
    print(f"wrote {args.out / 'results.csv'} and {args.out / 'uneven.png'}")


if __name__ == "__main__":
    main()
