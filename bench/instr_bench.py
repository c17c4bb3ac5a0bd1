"""The engine's own CPU cost in a map task, counted in instructions (valgrind's cachegrind): immune to a
noisy host.

Wall-clock ratios on a shared virtual machine move by 5-10% from run to run, more than the engine costs a
map task, so this counts instructions instead. Each column runs in a fresh interpreter under ``valgrind
--tool=cachegrind --cache-sim=no`` (fixed hash seed) over the same first ``--size`` bytes of the largest file
of ``mr_bench``'s fair corpus, and the interpreter's start-up and imports (counted alone) are subtracted:

- ``reference``: ``mr_bench``'s reference loop (``Counter.update`` of the regex's words, line by line);
- ``in-mapper user code``: the in-mapper example's mapper body inlined in a plain loop (no engine);
- ``in-mapper task`` and ``classic task``: dynamr's map task (reader, mapper, collector, partitioned runs
  handed to a sink) running examples/wordcount_inmapper.py and examples/wordcount.py over the same bytes
  as one split, in process, with the garbage collector set as a task process sets it.

Instructions are not time (the cost of a cache miss or a branch differs), but an engine overhead that shows
in neither is not there.

    python bench/instr_bench.py --size 64M   # a split of mr_bench's runs (about 8 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mr_bench

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = {"reference": "reference loop", "user": "in-mapper user code", "inmapper": "in-mapper task",
           "classic": "classic task"}


def _run(column: str, path: Path, size: int) -> None:
    """One column's work, in this process (under valgrind when measured). Every column imports the same
    modules first, so that subtracting the "none" column leaves the work alone."""
    sys.path.insert(0, str(ROOT / "examples"))
    from wordcount import WordCount  # type: ignore[import-not-found]
    from wordcount_inmapper import InMapperWordCount  # type: ignore[import-not-found]

    from dynamr.mapreduce import tasks
    from dynamr.mapreduce.splits import LocalFile, Split

    if column == "none":
        return
    if column == "reference":
        mr_bench._count_words([(str(path), 0, size)])
        return
    if column == "user":
        word = re.compile(r"[a-z0-9']+")
        counts: defaultdict[str, int] = defaultdict(int)
        for text in mr_bench.range_blocks(str(path), 0, size):
            for line in text.splitlines():
                for w in word.findall(line.lower()):
                    counts[w] += 1
        return
    from dynamr.mapreduce.child import collect_garbage_less

    collect_garbage_less()  # as a task process does before its first task
    job = InMapperWordCount() if column == "inmapper" else WordCount()
    step = job.steps()[0]
    records = tasks.input_reader(job, step)(LocalFile(path), Split(0, str(path), 0, size, path.stat().st_size))
    with tempfile.TemporaryDirectory() as scratch:
        tasks.run_map(job, step, records, 4, Path(scratch),
                      lambda partition, blocks: collections.deque(blocks, maxlen=0))


def instructions(column: str, path: Path, size: int) -> int:
    """Instructions a fresh interpreter executes to run ``column`` (start-up included)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "cachegrind.out"
        result = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}", sys.executable,
             __file__, "--one", column, "--file", str(path), "--bytes", str(size)],
            capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        match = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
        if result.returncode != 0 or match is None:
            raise SystemExit(f"{column} failed under valgrind:\n{result.stderr[-2000:]}")
        return int(match.group(1).replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="16M", help="bytes of text each column reads")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "dynamr-bench-data")
    parser.add_argument("--corpus", default="1G", help="which of mr_bench's corpora to read from")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _run(args.one, args.file, args.bytes)
        return
    size = mr_bench.parse_size(args.size)
    files = mr_bench.generate_text(args.data / f"fair-text-{args.corpus}", mr_bench.parse_size(args.corpus))
    path = max(files, key=lambda f: f.stat().st_size)
    if path.stat().st_size < size:
        raise SystemExit(f"--size {args.size} is more than the largest file ({path.stat().st_size} bytes)")
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # (counts do not depend on what runs beside)
        runs = dict(zip(["none", *COLUMNS], pool.map(lambda c: instructions(c, path, size), ["none", *COLUMNS]),
                        strict=True))
    base = runs["none"]
    counts = {column: runs[column] - base for column in COLUMNS}
    mb = size / 1e6
    print(f"{mb:.0f} MB of {path.name}; start-up and imports ({base / 1e6:,.0f}M instructions) subtracted")
    print(f"{'column':<22}{'instructions':>16}{'per MB':>12}{'vs reference':>14}")
    for column, label in COLUMNS.items():
        print(f"{label:<22}{counts[column]:>16,}{counts[column] / mb / 1e6:>11.1f}M"
              f"{counts[column] / counts['reference']:>13.3f}x")


if __name__ == "__main__":
    main()
