"""What the experiments share: text corpora, a local cluster of real node processes, running the word count
on it, checking its output against a sequential count, and writing raw results (CSV and JSON).

Corpora come from ``bench/mr_bench.py``'s generator (Zipf text over 60,000 made-up words, no pool of
repeated lines). Every job reads its input from the store (uploaded before the clock starts) and writes
its output there; the output is read back and compared with :func:`sequential_count`, the same regular
expression in one plain Python process.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from mr_bench import generate_text  # noqa: E402

from dynamr.client import Client  # noqa: E402
from dynamr.config import Quorum, StoreSettings  # noqa: E402
from dynamr.files.client import FileSystem  # noqa: E402
from dynamr.localcluster import LocalCluster  # noqa: E402
from dynamr.mapreduce.submit import JobClient, build_plan  # noqa: E402
from dynamr.rpc import messages as m  # noqa: E402

WORDCOUNT = ROOT / "examples" / "wordcount.py"
WORD = re.compile(r"[a-z0-9']+")
MB = 1_000_000

__all__ = ["MB", "ROOT", "WORDCOUNT", "arguments", "cluster", "cluster_cpu", "generate_text", "machine", "map_phase",
           "read_counts", "run_job", "save", "sequential_count", "upload", "write_rows"]


@contextmanager
def cluster(root: Path, nodes: int, slots: int, **settings: Any) -> Iterator[LocalCluster]:
    """``nodes`` node processes (each with ``slots`` task slots) and a coordinator on 127.0.0.1, stopped after."""
    n = min(3, nodes)
    made = LocalCluster.create(root, nodes, StoreSettings.from_dict({"task_slots": slots, **settings}).replace(
        quorum=Quorum(n=n, r=min(2, n), w=min(2, n))), ephemeral=True)
    made.start()
    try:
        yield made
    finally:
        made.stop()


def upload(local: LocalCluster, files: Sequence[Path], folder: str) -> None:
    with Client(local.seeds, local.secret, timeout=60) as client:
        fs = client.files()
        for path in files:
            fs.put_file(path, f"{folder}/{path.name}")


def run_job(local: LocalCluster, name: str, job_file: Path, inputs: list[str], output: str,
            **plan: Any) -> tuple[m.JobStatusView, float]:
    """Submit a job over store paths and wait for it; its final status and the seconds from submission
    to its end as the client saw them."""
    async def go(client: Client) -> tuple[m.JobStatusView, float]:
        fs = FileSystem(client.async_client)
        built = await build_plan(fs, name, job_file, inputs, output, local=False, **plan)
        jobs = JobClient(client.async_client)
        start = time.perf_counter()
        await jobs.submit(name, built, job_file.read_bytes())
        status = await jobs.wait(name, interval=0.05)
        return status, time.perf_counter() - start

    with Client(local.seeds, local.secret, timeout=60) as client:
        status, seconds = client.run(go(client))
    if status.state != "succeeded":
        error = status.error
        raise RuntimeError(f"job {name} {status.state}: {error.error if error else '?'}")
    return status, seconds


def read_counts(local: LocalCluster, output: str) -> Counter[str]:
    """The word count's output on the store, as a Counter (part files hold ``"word"<TAB>count`` lines)."""
    counts: Counter[str] = Counter()
    with Client(local.seeds, local.secret, timeout=60) as client:
        fs = client.files()
        for entry in fs.ls(output):
            if not entry.name.startswith("part-"):
                continue
            for line in fs.read_bytes(f"{output}/{entry.name}").decode().splitlines():
                key, value = line.split("\t")
                counts[json.loads(key)] = int(value)
    return counts


def sequential_count(files: Iterable[Path]) -> tuple[Counter[str], float]:
    """The word count in this one process (the same regular expression), and the seconds it took."""
    start = time.perf_counter()
    counts: Counter[str] = Counter()
    for path in files:
        with open(path) as f:
            for line in f:
                counts.update(WORD.findall(line.lower()))
    return counts, time.perf_counter() - start


def map_phase(status: m.JobStatusView) -> tuple[float, float]:
    """(seconds from the job's start to its last map's end, CPU-seconds of the attempts that succeeded)."""
    maps = [a for a in status.attempts if a.ok and "-m" in a.task.rsplit("/", 1)[-1]]
    end = max((a.ended for a in maps), default=status.started)
    busy = sum(a.ended - a.started for a in status.attempts if a.ok)
    return end - status.started, busy


def cluster_cpu(local: LocalCluster) -> float:
    """CPU-seconds the cluster's processes have used so far: each node's and the coordinator's own, that of
    their task processes that ended (counted in their parent once reaped), and that of those still alive.
    The difference across a job is the job's CPU cost, with the cluster's background work (heartbeats)."""
    tick = os.sysconf("SC_CLK_TCK")
    daemons = {pid for process in local.process_ids() if (pid := local.pid(process)) is not None}
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, parent = int(entry.name), int(fields[1])
        if pid in daemons:
            total += sum(int(f) for f in fields[11:15])  # utime, stime, and those of reaped children
        elif parent in daemons:
            total += int(fields[11]) + int(fields[12])  # a task process still alive
    return total / tick


def write_rows(folder: Path, name: str, rows: list[dict[str, Any]]) -> None:
    """The raw measurements as ``name.csv`` and ``name.json`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    with open(folder / f"{name}.csv", "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def arguments(doc: str | None, here: Path) -> argparse.ArgumentParser:
    """A runner's command line: its docstring as help, and --quick, --data and --out."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small size, for CI: checks results, not timing")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "dynamr-experiments",
                        help="where generated inputs go (kept for later runs)")
    parser.add_argument("--out", type=Path, default=here, help="where the results and the figure go")
    return parser


def save(figure: Any, path: Path, title: str) -> None:
    """Title, lay out, write as PNG and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def machine() -> str:
    import os
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
