"""MapReduce jobs against plain Python baselines: word count, inverted index, grep, sort.

Generates seeded inputs once (cached under the data directory): text with a Zipf word distribution over
uneven files (one file 20x the others), and 100-byte sort records. Then, for each job, times dynamr's
embedded ``dynamr run`` (a whole command, cluster start-up included, and the job alone), a single-process
Python reference, the same over all cores with multiprocessing, and Dask bag (multiprocessing scheduler) and
PySpark (local mode, JVM start-up not counted) when they are installed (``pip install "dask[bag]" pyspark``;
PySpark needs Java). For word count, Dask is timed twice: with ``frequencies()`` (Dask's fastest form,
which counts per partition like dynamr's in-mapper job), and with a ``(word, 1)`` record per word folded
by key (``foldby``: the algorithm of dynamr's classic job and of the PySpark reference).
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
#: the shipped example each job runs (wordcount_inmapper: the same word count with in-mapper combining)
EXAMPLE = {"sort": "terasort"}
#: the reference computation of a job (both word counts compute the same thing)
SAME_AS = {"wordcount_inmapper": "wordcount"}
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


# --- Dask bag and PySpark (local mode), when installed -------------------------------------------------


def _lower_words(line: str) -> list[str]:
    return WORD.findall(line.lower())


def _grep_matches(line: str) -> list[str]:
    return GREP.findall(line)


def _word_doc_pairs(path_and_text: tuple[str, str]) -> list[tuple[str, str]]:
    path, text = path_and_text
    name = Path(path).name
    return [(word, name) for word in set(WORD.findall(text.lower()))]


def dask_reference(job: str, files: list[Path], cores: int, blocksize: str) -> float | None:
    """Dask bag on its multiprocessing scheduler (None when dask is not installed or the job has no
    natural bag form: bags cannot sort)."""
    try:
        import dask.bag as db
    except ImportError:
        return None
    if job == "sort":
        return None
    started = time.perf_counter()
    lines = db.read_text([str(f) for f in files], blocksize=blocksize)
    if job == "wordcount":
        lines.map(_lower_words).flatten().frequencies().compute(scheduler="processes", num_workers=cores)
    elif job == "grep":
        lines.map(_grep_matches).flatten().frequencies().compute(scheduler="processes", num_workers=cores)
    else:
        with_paths = db.read_text([str(f) for f in files], blocksize=blocksize, include_path=True)
        with_paths.map(_word_doc_pairs).flatten().distinct().groupby(lambda pair: pair[0]).compute(
            scheduler="processes", num_workers=cores)
    return time.perf_counter() - started


def _pair(word: str) -> tuple[str, int]:
    return word, 1


def _first(pair: tuple[str, int]) -> str:
    return pair[0]


def _fold(total: int, pair: tuple[str, int]) -> int:
    return total + pair[1]


def _add(a: int, b: int) -> int:
    return a + b


def dask_pairs_reference(job: str, files: list[Path], cores: int, blocksize: str) -> float | None:
    """Word count in Dask with a record per word, folded by key (None for other jobs, or without dask)."""
    try:
        import dask.bag as db
    except ImportError:
        return None
    if job != "wordcount":
        return None
    started = time.perf_counter()
    words = db.read_text([str(f) for f in files], blocksize=blocksize).map(_lower_words).flatten()
    words.map(_pair).foldby(_first, _fold, 0, _add, 0).compute(scheduler="processes", num_workers=cores)
    return time.perf_counter() - started


class Spark:
    """A local-mode SparkSession started once (its JVM start-up is not counted in the job times)."""

    def __init__(self, cores: int) -> None:
        self.session: object | None = None
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            return
        try:
            self.session = (SparkSession.builder.master(f"local[{cores}]").appName("dynamr-bench")
                            .config("spark.ui.enabled", "false")
                            .config("spark.ui.showConsoleProgress", "false").config("spark.driver.memory", "4g")
                            .config("spark.sql.shuffle.partitions", str(cores * 2)).getOrCreate())
            self.session.sparkContext.setLogLevel("ERROR")  # type: ignore[attr-defined]
        except Exception as exc:  # no Java, for one
            print(f"PySpark is installed but could not start ({exc}); it is left out")
            self.session = None

    def run(self, job: str, files: list[Path], split: int) -> float | None:
        if self.session is None:
            return None
        from operator import add

        sc = self.session.sparkContext  # type: ignore[attr-defined]
        total = sum(f.stat().st_size for f in files)
        started = time.perf_counter()
        if job == "sort":
            rdd = sc.textFile(str(files[0]), minPartitions=max(2, total // split))
            rdd.sortBy(lambda line: line[:10], numPartitions=4).count()
        elif job == "inverted_index":
            docs = sc.wholeTextFiles(",".join(str(f) for f in files))
            docs.flatMap(_word_doc_pairs).distinct().groupByKey().mapValues(sorted).collect()
        else:
            rdd = sc.textFile(",".join(str(f) for f in files), minPartitions=max(2, total // split))
            words = rdd.flatMap(_lower_words if job == "wordcount" else _grep_matches)
            words.map(lambda w: (w, 1)).reduceByKey(add).collect()
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.session is not None:
            self.session.stop()  # type: ignore[attr-defined]


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
                    if b"-m\x00dynamr" not in (proc / "cmdline").read_bytes():
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
    example = ROOT / "examples" / f"{EXAMPLE.get(job, job)}.py"
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


def _cell(seconds: float | None, width: int) -> str:
    return f"{seconds:>{width - 1}.2f}s" if seconds else f"{'-':>{width}}"


def _ratio(ours: float, theirs: float | None, width: int) -> str:
    return f"{ours / theirs:>{width - 1}.2f}x" if theirs else f"{'-':>{width}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="100M", help="input size per job (text, and sort records)")
    parser.add_argument("--jobs", default="wordcount,wordcount_inmapper,inverted_index,grep,sort")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "dynamr-bench-data")
    parser.add_argument("--split-size", default="32M")
    args = parser.parse_args()
    size = parse_size(args.size)
    cores = os.cpu_count() or 1
    text = generate_text(args.data / f"text-{args.size}", size)
    records = generate_records(args.data / f"records-{args.size}.txt", size)
    print(f"machine: {platform.machine()}, {cores} cores, Python {sys.version.split()[0]}, "
          f"{platform.system()} {platform.release()}; input {size / 1e6:.0f} MB per job")
    print(f"{'job':<20}{'dynamr run':>11}{'job only':>10}{'1 proc':>9}{f'{cores} procs':>9}{'dask bag':>10}"
          f"{'dask pairs':>11}{'pyspark':>9}{'vs 1 proc':>10}{f'vs {cores} procs':>11}{'vs dask':>9}"
          f"{'vs pairs':>9}{'vs spark':>10}{'peak RSS':>10}")
    spark = Spark(cores)
    try:
        for job in args.jobs.split(","):
            inputs = [records] if job == "sort" else text
            ref = SAME_AS.get(job, job)
            single = reference(ref, inputs, 1)
            multi = reference(ref, inputs, cores)
            dask_s = dask_reference(ref, inputs, cores, args.split_size.upper() + "B")
            pairs_s = dask_pairs_reference(ref, inputs, cores, args.split_size.upper() + "B")
            spark_s = spark.run(ref, inputs, parse_size(args.split_size))
            wall, job_s, rss = run_dynamr(job, inputs, args.data / f"out-{job}", 4 if job != "grep" else 2,
                                          args.split_size)

            print(f"{job:<20}{wall:>10.2f}s{job_s:>9.2f}s{single:>8.2f}s{multi:>8.2f}s{_cell(dask_s, 10)}"
                  f"{_cell(pairs_s, 11)}{_cell(spark_s, 9)}{_ratio(job_s, single, 10)}{_ratio(job_s, multi, 11)}"
                  f"{_ratio(job_s, dask_s, 9)}{_ratio(job_s, pairs_s, 9)}{_ratio(job_s, spark_s, 10)}"
                  f"{rss:>8.0f}MiB", flush=True)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
