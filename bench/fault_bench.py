"""Word count with a node killed at half time, against the same job undisturbed (issue 5's benchmark).

A local cluster of three node processes and a coordinator (replication N=3, R=2, W=2, intermediate data in
the store, task slots one per core per node) runs examples/wordcount.py over the bench's Zipf text, read in
place. The disturbed run SIGKILLs node n3 at half the undisturbed run's time; the node stays dead.
Both runs are timed by the coordinator (submission to ``_SUCCESS``), each on a fresh cluster, and the
output of the disturbed run is checked against the undisturbed one.

    python bench/fault_bench.py --size 1G
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mr_bench import generate_text, parse_size

from dynamr.config import Quorum, StoreSettings
from dynamr.files.client import FileSystem
from dynamr.localcluster import LocalCluster
from dynamr.mapreduce.submit import JobClient, build_plan
from dynamr.rpc.messages import JobStatusView
from dynamr.store.client import Client

ROOT = Path(__file__).resolve().parent.parent


def run(inputs: list[Path], out: Path, split_size: int, reducers: int,
        kill_at: float | None) -> tuple[JobStatusView, float | None]:
    """One job on a fresh 3-node cluster; with ``kill_at``, SIGKILL n3 once the job has run that many seconds."""
    settings = StoreSettings(quorum=Quorum(n=3, r=2, w=2), fsync="never")
    with tempfile.TemporaryDirectory(prefix="dynamr-fault-bench-") as tmp:
        cluster = LocalCluster.create(Path(tmp), 3, settings, ephemeral=True)
        cluster.start()
        try:
            with Client(cluster.seeds, cluster.secret, timeout=60) as client:
                jobs = JobClient(client.async_client)
                plan = client.run(build_plan(FileSystem(client.async_client), "wc", ROOT / "examples" / "wordcount.py",
                                             [str(p) for p in inputs], str(out), local=True, reducers=reducers,
                                             split_size=split_size))
                client.run(jobs.submit("wc", plan, (ROOT / "examples" / "wordcount.py").read_bytes()))
                killed_at = None
                while True:
                    status = client.run(jobs.status("wc"))
                    if status.state not in ("created", "running"):
                        break
                    if kill_at is not None and killed_at is None and status.seconds >= kill_at:
                        cluster.kill_node("n3")
                        killed_at = status.seconds
                    time.sleep(0.1)
                return client.run(jobs.wait("wc")), killed_at
        finally:
            cluster.stop()


def read_output(folder: Path) -> list[str]:
    return sorted(line for part in sorted(folder.glob("part-*")) for line in part.read_text().splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="100M")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "dynamr-bench-data")
    parser.add_argument("--split-size", default="32M")
    parser.add_argument("--reducers", type=int, default=4)
    args = parser.parse_args()
    size = parse_size(args.size)
    text = generate_text(args.data / f"text-{args.size}", size)
    split = parse_size(args.split_size)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"{platform.system()} {platform.release()}; word count of {size / 1e6:.0f} MB on 3 nodes")
    outputs: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for label in ("undisturbed", "n3 killed at half time"):
        kill_at = seconds["undisturbed"] / 2 if seconds else None
        out = args.data / f"out-fault-{'killed' if kill_at else 'clean'}"
        shutil.rmtree(out, ignore_errors=True)
        status, killed_at = run(text, out, split, args.reducers, kill_at)
        if status.state != "succeeded":
            raise SystemExit(f"{label}: the job {status.state}: {status.error}")
        lost = [a for a in status.attempts if not a.ok]
        seconds[label] = status.seconds
        outputs[label] = read_output(out)
        extra = f", n3 killed at {killed_at or 0:.1f}s, {len(lost)} attempt(s) lost" if kill_at else ""
        print(f"{label:<24} {status.seconds:7.2f}s  ({status.maps} maps, "
              f"{status.speculative_attempts} backup attempt(s){extra})")
    same = outputs["undisturbed"] == outputs["n3 killed at half time"]
    ratio = seconds["n3 killed at half time"] / seconds["undisturbed"]
    print(f"ratio disturbed / undisturbed: {ratio:.2f}x (goal: at most 1.3x); outputs identical: {same}")
    if not same:
        raise SystemExit("the disturbed run's output differs from the undisturbed run's")


if __name__ == "__main__":
    main()
