"""Whole-data-set aggregations of the dataflow API against Dask bag: count, mean, top and take.

On the fair corpus of ``mr_bench.py`` (sixteen text files of uneven size), each row is one graph run on an
embedded session started before the clock (as Dask's pool is warm after its first row), and the same
computation on Dask bag's multiprocessing scheduler with the same block size. Every pair of results is
checked equal before its row is printed.

    python bench/agg_bench.py --size 1G
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mr_bench import generate_text, parse_size, warm

from dynamr.dataflow import Dataset, Flow, Session


def _words(line: str) -> list[str]:
    return line.split()


ROWS: dict[str, tuple[Callable[[Dataset], Dataset], Callable[[Any], Any]]] = {
    # name: (the dynamr graph from the lines, the Dask bag computation from the lines)
    "count lines": (lambda text: text.count(), lambda bag: bag.count()),
    "count words": (lambda text: text.flat_map(str.split).count(), lambda bag: bag.map(_words).flatten().count()),
    "mean word length": (lambda text: text.flat_map(str.split).map(len).mean(),
                         lambda bag: bag.map(_words).flatten().map(len).mean()),
    "10 longest lines": (lambda text: text.top(10, key=len), lambda bag: bag.topk(10, key=len)),
    "first 5 lines": (lambda text: text.take(5), lambda bag: bag.take(5, npartitions=1)),
}


def same(ours: list[Any], theirs: Any) -> bool:
    if isinstance(theirs, (tuple, list)):  # top k: ties may be broken differently; lengths must agree
        theirs = [line.rstrip("\n") for line in theirs]  # Dask's lines keep their newlines
        if len(theirs) == 10:
            return sorted(map(len, ours)) == sorted(map(len, theirs))
        return list(ours) == list(theirs)
    if isinstance(theirs, float):
        return len(ours) == 1 and math.isclose(ours[0], theirs, rel_tol=1e-9)
    return ours == [theirs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="100M")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "dynamr-bench-data")
    parser.add_argument("--split-size", default="64M")
    args = parser.parse_args()
    files = generate_text(args.data / f"fair-text-{args.size}", parse_size(args.size))
    warm(files)
    paths = [str(f) for f in files]
    cores = os.cpu_count() or 1
    print(f"machine: {platform.machine()}, {cores} cores, Python {sys.version.split()[0]}; "
          f"{sum(f.stat().st_size for f in files) / 1e6:.0f} MB of text in {len(files)} files")
    try:
        import dask
        import dask.bag as db
    except ImportError:
        db = None
    print(f"{'aggregation':<20}{'dynamr':>9}{'dask bag':>10}{'vs dask':>9}")
    with Session.start_embedded(split_size=parse_size(args.split_size)) as session:
        for name, (ours, theirs) in ROWS.items():
            flow = Flow(session)
            started = time.perf_counter()
            got = ours(flow.text(*paths)).run()
            seconds = time.perf_counter() - started
            dask_seconds = None
            if db is not None:
                with dask.config.set(scheduler="processes", num_workers=cores):
                    started = time.perf_counter()
                    want = theirs(db.read_text(paths, blocksize=args.split_size))
                    want = want.compute() if hasattr(want, "compute") else want
                    dask_seconds = time.perf_counter() - started
                if not same(got, want):
                    raise SystemExit(f"{name}: dynamr gave {got!r}, Dask bag {want!r}")
            ratio = f"{seconds / dask_seconds:.2f}x" if dask_seconds else "-"
            dask_cell = f"{dask_seconds:.2f} s" if dask_seconds is not None else "-"
            print(f"{name:<20}{seconds:>7.2f} s{dask_cell:>10}{ratio:>9}", flush=True)


if __name__ == "__main__":
    main()
