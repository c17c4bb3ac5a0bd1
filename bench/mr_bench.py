"""MapReduce jobs against plain Python baselines: word count, inverted index, grep, sort.

Generates seeded inputs once (cached under the data directory): text with a Zipf word distribution over
uneven files (one file 20x the others), and 100-byte sort records. Then, for each job, times dynamr's
embedded ``dynamr run`` (a whole command, cluster start-up included, and the job alone), a single-process
Python reference, the same over all cores with multiprocessing, and Dask bag / PySpark when installed.
Peak resident memory of every dynamr process is sampled from /proc while it runs.

    python bench/mr_bench.py --size 100M
    python bench/mr_bench.py --size 1G --jobs wordcount,sort
"""

from __future__ import annotations

import argparse
import heapq
import os
import platform
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORD = re.compile(r"[a-z0-9']+")
GREP = re.compile(r"\bth[a-z]+\b")


# --- data ----------------------------------------------------------------------------------------------


def generate_text(folder: Path, total: int, seed: int = 42) -> list[Path]:
    """Ten files of uneven sizes (the first 20x each other one) summing to about ``total`` bytes."""
    if folder.exists() and sum(p.stat().st_size for p in folder.iterdir()) >= total * 0.95:
        return sorted(folder.iterdir())
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(20000)] + ["the", "then", "there", "this", "that", "thunder", "harbour"]
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    pool = [" ".join(rng.choices(vocabulary, weights, k=rng.randint(1, 16))) for _ in range(20000)]
    shares = [20] + [1] * 9
    paths = []
    for i, share in enumerate(shares):
        target = total * share // sum(shares)
        path = folder / f"text{i:02d}.txt"
        with open(path, "w") as out:
            written = 0
            while written < target:
                block = "\n".join(rng.choices(pool, k=5000)) + "\n"
                out.write(block)
                written += len(block)
        paths.append(path)
    return paths


def generate_records(path: Path, total: int, seed: int = 7) -> Path:
    """``total`` bytes of 100-byte records: a 10-character key, then payload, then a newline."""
    if path.exists() and path.stat().st_size >= total * 0.95:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    payload = "".join(rng.choices(alphabet, k=200))
    with open(path, "w") as out:
        for start in range(0, total // 100, 10000):
            lines = []
            for i in range(start, min(total // 100, start + 10000)):
                key = "".join(rng.choices(alphabet, k=10))
                lines.append(f"{key}{i:010d}{payload[i % 100:i % 100 + 79]}\n")
            out.write("".join(lines))
    return path


# --- references ----------------------------------------------------------------------------------------


def _words(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            counts.update(WORD.findall(line.lower()))
    return counts


def _index(path: Path) -> dict[str, set[str]]:
    index: dict[str, set[str]] = defaultdict(set)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            for word in set(WORD.findall(line.lower())):
                index[word].add(path.name)
    return index


def _grep(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            counts.update(GREP.findall(line))
    return counts


def _sorted_chunk(args: tuple[Path, int, int]) -> list[str]:
    path, start, end = args
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start).decode()
    return sorted(data.splitlines(), key=lambda line: line[:10])


def reference(job: str, files: list[Path], processes: int) -> float:
    started = time.perf_counter()
    if job == "sort":
        path = files[0]
        if processes == 1:
            with open(path) as f:
                sorted(f.read().splitlines(), key=lambda line: line[:10])
        else:
            size = path.stat().st_size
            step = -(-size // (processes * 100)) * 100
            with Pool(processes) as pool:
                runs = pool.map(_sorted_chunk, [(path, s, min(size, s + step)) for s in range(0, size, step)])
            for _ in heapq.merge(*runs, key=lambda line: line[:10]):
                pass
        return time.perf_counter() - started
    work = {"wordcount": _words, "inverted_index": _index, "grep": _grep}[job]
    if processes == 1:
        results = [work(f) for f in files]
    else:
        with Pool(processes) as pool:
            results = pool.map(work, files, chunksize=1)
    if job == "inverted_index":
        merged: dict[str, set[str]] = defaultdict(set)
        for part in results:
            for word, docs in part.items():  # type: ignore[attr-defined]
                merged[word] |= docs
    else:
        total: Counter[str] = Counter()
        for part in results:
            total.update(part)  # type: ignore[arg-type]
    return time.perf_counter() - started


# --- dynamr --------------------------------------------------------------------------------------------


class PeakRss:
    """Highest resident memory of any dynamr process (nodes, coordinator, task children) while running.

    Reads each process's VmHWM (the kernel's own high-water mark), so a coarse sampling interval misses
    only processes that live less than one interval."""

    def __init__(self) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    if b"dynamr" not in (proc / "cmdline").read_bytes():
                        continue
                    for line in (proc / "status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            self.peak_mib = max(self.peak_mib, int(line.split()[1]) / 1024)
                except OSError:
                    continue

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_dynamr(job: str, inputs: list[Path], out: Path, reducers: int, split: str) -> tuple[float, float, float]:
    example = ROOT / "examples" / f"{'terasort' if job == 'sort' else job}.py"
    command = [sys.executable, "-m", "dynamr", "run", str(example), *map(str, inputs), "-o", str(out),
               "--overwrite", "-r", str(reducers), "--split-size", split]
    if job == "grep":
        command += ["-D", r"pattern=\bth[a-z]+\b"]
    started = time.perf_counter()
    with PeakRss() as rss:
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"dynamr {job} failed:\n{result.stderr}")
    match = re.search(r"succeeded in ([0-9.]+)s", " ".join(result.stdout.split()))
    return wall, float(match.group(1)) if match else wall, rss.peak_mib


def parse_size(text: str) -> int:
    units = {"k": 10**3, "m": 10**6, "g": 10**9}
    text = text.lower().rstrip("b")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="100M", help="input size per job (text, and sort records)")
    parser.add_argument("--jobs", default="wordcount,inverted_index,grep,sort")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "dynamr-bench-data")
    parser.add_argument("--split-size", default="32M")
    args = parser.parse_args()
    size = parse_size(args.size)
    cores = os.cpu_count() or 1
    text = generate_text(args.data / f"text-{args.size}", size)
    records = generate_records(args.data / f"records-{args.size}.txt", size)
    print(f"machine: {platform.machine()}, {cores} cores, Python {sys.version.split()[0]}, "
          f"{platform.system()} {platform.release()}; input {size / 1e6:.0f} MB per job")
    print(f"{'job':<16}{'dynamr run':>11}{'job only':>10}{'1 proc':>9}{f'{cores} procs':>9}"
          f"{'vs 1 proc':>10}{f'vs {cores} procs':>11}{'peak RSS':>10}")
    for job in args.jobs.split(","):
        inputs = [records] if job == "sort" else text
        single = reference(job, inputs, 1)
        multi = reference(job, inputs, cores)
        wall, job_s, rss = run_dynamr(job, inputs, args.data / f"out-{job}", 4 if job != "grep" else 2,
                                      args.split_size)
        print(f"{job:<16}{wall:>10.2f}s{job_s:>9.2f}s{single:>8.2f}s{multi:>8.2f}s{job_s / single:>9.2f}x"
              f"{job_s / multi:>10.2f}x{rss:>8.0f}MiB")


if __name__ == "__main__":
    main()
