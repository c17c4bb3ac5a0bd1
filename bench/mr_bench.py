"""MapReduce jobs against fair references: word count, inverted index, grep, sort.

The corpus cannot flatter anyone (issue 17): sixteen text files of uneven size (1 to 18, none over 20% of
the bytes), each line a fresh draw of 1 to 20 words from a Zipf distribution over 60,000 made-up words
(no pool of lines to repeat), and 100-byte sort records. Every reference runs the same algorithm as the
dynamr job (the same regular expression, a record per word for the classic word count) and spreads the
work evenly over the cores: even byte ranges of the whole corpus, aligned to lines, one per process.
Dask bag (multiprocessing scheduler) and PySpark (local mode, JVM start-up not counted) run when
installed (``pip install "dask[bag]" pyspark``; PySpark needs Java). Every output is checked equal to the
single-process reference's before a row is printed. Peak resident memory is that of dynamr's own
processes (nodes, coordinator, task processes), sampled from /proc while it runs.

    python bench/mr_bench.py --size 100M
    python bench/mr_bench.py --size 1G --jobs wordcount,sort
"""

from __future__ import annotations

import argparse
import collections
import heapq
import itertools
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import xxhash

ROOT = Path(__file__).resolve().parent.parent
WORD = re.compile(r"[a-z0-9']+")
#: the shipped example each job runs (wordcount_inmapper: the same word count with in-mapper combining)
EXAMPLE = {"sort": "terasort"}
#: the reference computation of a job (both word counts compute the same thing)
SAME_AS = {"wordcount_inmapper": "wordcount"}
#: jobs that are dataflow graphs (examples/dataflow_*.py, run in this process on an embedded session
#: started before the clock starts, as Spark's session is); their references split on whitespace
DATAFLOW = {"dataflow_wordcount": "split_words"}
GREP = re.compile(r"\bth[a-z]+\b")


# --- data ----------------------------------------------------------------------------------------------


#: corpus layout: file size weights (1 to 18; the largest is 11.8% of the bytes)
FILE_WEIGHTS = [1 + 17 * i / 15 for i in range(16)]
VOCABULARY = 60_000


def _vocabulary(rng: random.Random) -> list[str]:
    """Distinct made-up lowercase words, short ones for the frequent ranks (as in real text), plus the
    words the grep job looks for."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["the", "then", "there", "this", "that", "thunder", "through", "three", "thing", "those"]
    seen = set(words)
    while len(words) < VOCABULARY:
        length = min(14, 2 + int(rng.expovariate(1 / (1 + len(words) ** 0.25))))
        word = "".join(rng.choices(letters, k=length))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def generate_text(folder: Path, total: int, seed: int = 42, weights: list[float] | None = None) -> list[Path]:
    """Files of Zipf text summing to about ``total`` bytes, sized by ``weights`` (the sixteen uneven
    ``FILE_WEIGHTS`` by default); cached in ``folder``."""
    weights = FILE_WEIGHTS if weights is None else weights
    if folder.exists() and len(list(folder.iterdir())) == len(weights) and \
            total * 0.95 <= sum(p.stat().st_size for p in folder.iterdir()) <= total * 1.2 + 100_000:
        return sorted(folder.iterdir())
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    vocabulary = _vocabulary(rng)
    cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(vocabulary))))
    paths = []
    for i, weight in enumerate(weights):
        target = int(total * weight / sum(weights))
        path = folder / f"text{i:02d}.txt" if len(weights) <= 100 else folder / f"text{i:05d}.txt"
        with open(path, "w") as out:
            written = 0
            while written < target:
                words = rng.choices(vocabulary, cum_weights=cumulative, k=max(100, min(200_000, target // 6)))
                lines, at = [], 0
                while at < len(words):
                    step = rng.randint(1, 20)
                    lines.append(" ".join(words[at:at + step]))
                    at += step
                block = "\n".join(lines) + "\n"
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


# --- references: the same algorithms, the corpus cut in even byte ranges --------------------------------


Range = tuple[str, int, int]


def even_ranges(files: list[Path], parts: int) -> list[list[Range]]:
    """The corpus cut into ``parts`` shares of about equal bytes: each a list of (path, start, end)."""
    sizes = [(str(f), f.stat().st_size) for f in files]
    share = sum(size for _, size in sizes) / parts
    out: list[list[Range]] = [[] for _ in range(parts)]
    done = 0
    for path, size in sizes:
        pos = 0
        while pos < size:
            part = min(parts - 1, int(done // share))
            take = size - pos if part == parts - 1 else max(1, min(size - pos, int((part + 1) * share - done)))
            out[part].append((path, pos, pos + take))
            pos += take
            done += take
    return out


def range_blocks(path: str, start: int, end: int, block: int = 8 << 20) -> Iterator[str]:
    """The lines that start in [start, end) of a file, as text blocks of whole lines (a split's lines)."""
    with open(path, "rb") as f:
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                f.readline()  # the line that began before belongs to the previous range
            start = f.tell()
        f.seek(start)
        pos = start
        while pos < end:
            data = f.read(min(block, end - pos))
            if not data:
                return
            pos += len(data)
            if not data.endswith(b"\n"):
                rest = f.readline()
                data += rest
                pos += len(rest)
            yield data.decode("utf-8", "replace")


def _count_words(ranges: list[Range]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path, start, end in ranges:
        for text in range_blocks(path, start, end):
            for line in text.splitlines():
                counts.update(WORD.findall(line.lower()))
    return counts


def _split_words(ranges: list[Range]) -> Counter[str]:
    """Word count by ``str.split``, written as plain Python writes it: a Counter updated line by line."""
    counts: Counter[str] = Counter()
    for path, start, end in ranges:
        for text in range_blocks(path, start, end):
            for line in text.splitlines():
                counts.update(line.split())
    return counts


def _grep(ranges: list[Range]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path, start, end in ranges:
        for text in range_blocks(path, start, end):
            for line in text.splitlines():
                counts.update(GREP.findall(line))
    return counts


def _index(ranges: list[Range]) -> dict[str, set[str]]:
    index: dict[str, set[str]] = defaultdict(set)
    for path, start, end in ranges:
        name = Path(path).name
        for text in range_blocks(path, start, end):
            for line in text.splitlines():
                for word in set(WORD.findall(line.lower())):
                    index[word].add(name)
    return index


def _sorted_range(ranges: list[Range]) -> list[str]:
    lines: list[str] = []
    for path, start, end in ranges:
        for text in range_blocks(path, start, end):
            lines.extend(text.splitlines())  # C-level: as fast as sorted(f.read().splitlines())
    lines.sort(key=_sort_key)
    return lines


def _sort_key(line: str) -> str:
    return line[:10]


def many_weights(files: int) -> list[float]:
    """Sizes for a corpus of many files: 1 to 18 (as FILE_WEIGHTS), in an order that does not sort them."""
    return [1 + 17 * ((i * 7919) % files) / max(1, files - 1) for i in range(files)]


def warm(files: list[Path]) -> None:
    """Read the files once, so that no column of a row pays for reading them from disk."""
    for path in files:
        with open(path, "rb") as f:
            while f.read(16 << 20):
                pass


def digest(lines: Iterable[str]) -> str:
    h = xxhash.xxh3_128()
    for line in lines:
        h.update(line.encode())
        h.update(b"\n")
    return h.hexdigest()


def reference(job: str, files: list[Path], processes: int) -> tuple[float, Any]:
    """Seconds, and the result to check (a dict, or the digest of sorted output)."""
    shares = even_ranges(files, processes)
    started = time.perf_counter()
    if job == "sort":
        if processes == 1:
            runs = [_sorted_range(shares[0])]
        else:
            with Pool(processes) as pool:
                runs = pool.map(_sorted_range, shares)
        collections.deque(heapq.merge(*runs, key=_sort_key), maxlen=0)
        seconds = time.perf_counter() - started
        return seconds, digest(heapq.merge(*runs, key=_sort_key))
    work = {"wordcount": _count_words, "inverted_index": _index, "grep": _grep, "split_words": _split_words}[job]
    if processes == 1:
        results = [work(shares[0])]
    else:
        with Pool(processes) as pool:
            results = pool.map(work, shares, chunksize=1)
    if job == "inverted_index":
        merged: dict[str, set[str]] = defaultdict(set)
        for part in results:
            for word, docs in part.items():  # type: ignore[attr-defined]
                merged[word] |= docs
        seconds = time.perf_counter() - started
        return seconds, {word: sorted(docs) for word, docs in merged.items()}
    total: Counter[str] = Counter()
    for part in results:
        total.update(part)  # type: ignore[arg-type]
    return time.perf_counter() - started, dict(total)


# --- Dask bag and PySpark (local mode), when installed -------------------------------------------------


def _lower_words(line: str) -> list[str]:
    return WORD.findall(line.lower())


def _split(line: str) -> list[str]:
    return line.split()


def _grep_matches(line: str) -> list[str]:
    return GREP.findall(line)


def _line_doc_pairs(line_and_path: tuple[str, str]) -> list[tuple[str, str]]:
    """``read_text(include_path=True)`` gives (line, path): the line's distinct words with its document."""
    line, path = line_and_path
    name = Path(path).name
    return [(word, name) for word in set(WORD.findall(line.lower()))]


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


def _add_doc(docs: frozenset[str], pair: tuple[str, str]) -> frozenset[str]:
    return docs | {pair[1]}


def _union(a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
    return a | b


def _pair(word: str) -> tuple[str, int]:
    return word, 1


def _fold(total: int, pair: tuple[str, int]) -> int:
    return total + pair[1]


def _add(a: int, b: int) -> int:
    return a + b


def dask_reference(job: str, files: list[Path], cores: int, blocksize: str,
                   pairs: bool = False) -> tuple[float, Any] | None:
    """Dask bag on its multiprocessing scheduler (None when dask is not installed, or for sort: bags do not
    sort). ``pairs``: word count with a (word, 1) record per word folded by key, the classic job's
    algorithm, instead of ``frequencies()``."""
    try:
        import dask.bag as db
    except ImportError:
        return None
    if job == "sort" or (pairs and job != "wordcount"):
        return None
    paths = [str(f) for f in files]
    started = time.perf_counter()
    if job == "inverted_index":
        lines = db.read_text(paths, blocksize=blocksize, include_path=True)
        found = lines.map(_line_doc_pairs).flatten().foldby(_first, _add_doc, frozenset(), _union, frozenset())
        result: Any = {word: sorted(docs) for word, docs in found.compute(scheduler="processes",
                                                                         num_workers=cores)}
    else:
        split = {"grep": _grep_matches, "split_words": _split}.get(job, _lower_words)
        items = db.read_text(paths, blocksize=blocksize).map(split)
        if pairs:
            counted = items.flatten().map(_pair).foldby(_first, _fold, 0, _add, 0)
        else:
            counted = items.flatten().frequencies()
        result = dict(counted.compute(scheduler="processes", num_workers=cores))
    return time.perf_counter() - started, result


class Spark:
    """A local-mode SparkSession started once (its JVM start-up is not counted in the job times)."""

    def __init__(self, cores: int) -> None:
        self.session: Any = None
        if cores == 0:  # left out
            return
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            return
        try:
            self.session = (SparkSession.builder.master(f"local[{cores}]").appName("dynamr-bench")
                            .config("spark.ui.enabled", "false")
                            .config("spark.ui.showConsoleProgress", "false").config("spark.driver.memory", "4g")
                            .config("spark.sql.shuffle.partitions", str(cores * 2)).getOrCreate())
            self.session.sparkContext.setLogLevel("ERROR")
        except Exception as exc:  # no Java, for one
            print(f"PySpark is installed but could not start ({exc}); it is left out")
            self.session = None

    def run(self, job: str, files: list[Path], split: int, out: Path) -> tuple[float, Any] | None:
        if self.session is None:
            return None
        from operator import add

        sc = self.session.sparkContext
        total = sum(f.stat().st_size for f in files)
        parts = max(2, total // split)
        started = time.perf_counter()
        if job == "sort":
            shutil.rmtree(out, ignore_errors=True)
            rdd = sc.textFile(",".join(str(f) for f in files), minPartitions=parts)
            rdd.sortBy(_sort_key, numPartitions=4).saveAsTextFile(str(out))
            seconds = time.perf_counter() - started
            return seconds, digest(line.rstrip("\n") for part in sorted(out.glob("part-*"))
                                   for line in open(part))
        if job == "inverted_index":
            per_file = [sc.textFile(str(f), minPartitions=max(1, f.stat().st_size * parts // total))
                        .map(lambda line, path=str(f): (line, path)) for f in files]
            found = sc.union(per_file).flatMap(_line_doc_pairs).distinct().groupByKey().mapValues(sorted)
            result: Any = dict(found.collect())
        else:
            rdd = sc.textFile(",".join(str(f) for f in files), minPartitions=parts)
            words = rdd.flatMap({"grep": _grep_matches, "split_words": _split}.get(job, _lower_words))
            result = dict(words.map(_pair).reduceByKey(add).collect())
        return time.perf_counter() - started, result

    def stop(self) -> None:
        if self.session is not None:
            self.session.stop()


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


def run_dataflow(job: str, inputs: list[Path], split: str) -> tuple[float, float, Any]:
    """Seconds of the graph's run (the embedded session started before), peak RSS, and its result."""
    sys.path.insert(0, str(ROOT / "examples"))
    from dynamr.dataflow import Flow, Session

    module = __import__(job)
    with Session.start_embedded(split_size=parse_size(split)) as session, PeakRss() as rss:
        started = time.perf_counter()
        result = dict(module.build(Flow(session), [str(p) for p in inputs]).run())
        seconds = time.perf_counter() - started
    return seconds, rss.peak_mib, result


def dynamr_result(job: str, out: Path) -> Any:
    """What a dynamr job wrote, in the form the references return."""
    parts = sorted(out.glob("part-*"))
    if job == "sort":  # TeraSort writes key TAB payload: the record again without the tab
        return digest(line.rstrip("\n").replace("\t", "", 1) for part in parts for line in open(part))
    result = {}
    for part in parts:
        with open(part, encoding="utf-8") as f:
            for line in f:
                key, value = line.rstrip("\n").split("\t")
                result[json.loads(key)] = json.loads(value)
    return result


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
    parser.add_argument("--jobs", default="wordcount,wordcount_inmapper,inverted_index,grep,sort,dataflow_wordcount")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "dynamr-bench-data")
    parser.add_argument("--files", type=int, default=len(FILE_WEIGHTS),
                        help="text files the corpus is cut into (more than 16: sizes 1 to 18 in a fixed shuffle, "
                             "e.g. --files 2000 for a job of many small files)")
    parser.add_argument("--no-spark", action="store_true", help="leave PySpark out (on thousands of files its "
                                                                    "one task per file takes minutes a job)")
    parser.add_argument("--split-size", default="64M",
                        help="dynamr's split size (its default), Dask's blocksize and Spark's partition size")
    args = parser.parse_args()
    size = parse_size(args.size)
    cores = os.cpu_count() or 1
    if args.files == len(FILE_WEIGHTS):
        text = generate_text(args.data / f"fair-text-{args.size}", size)
    else:
        text = generate_text(args.data / f"fair-text-{args.size}-{args.files}-files", size,
                             weights=many_weights(args.files))
    records = generate_records(args.data / f"records-{args.size}.txt", size)
    print(f"machine: {platform.machine()}, {cores} cores, Python {sys.version.split()[0]}, "
          f"{platform.system()} {platform.release()}; input {size / 1e6:.0f} MB per job; text in {len(text)} "
          f"files, the largest {max(f.stat().st_size for f in text) / sum(f.stat().st_size for f in text):.0%}")
    print(f"{'job':<20}{'dynamr run':>11}{'job only':>10}{'1 proc':>9}{f'{cores} procs':>9}{'dask bag':>10}"
          f"{'dask pairs':>11}{'pyspark':>9}{'vs 1 proc':>10}{f'vs {cores} procs':>11}{'vs dask':>9}"
          f"{'vs pairs':>9}{'vs spark':>10}{'peak RSS':>10}  outputs")
    spark = Spark(0 if args.no_spark else cores)
    blocksize = args.split_size.upper() + "B"
    try:
        for job in args.jobs.split(","):
            inputs = [records] if job == "sort" else text
            warm(inputs)  # every column reads from the page cache, the first one too
            ref = DATAFLOW.get(job) or SAME_AS.get(job, job)
            single, expected = reference(ref, inputs, 1)
            runs: dict[str, tuple[float, Any] | None] = {
                "multi": reference(ref, inputs, cores),
                "dask": dask_reference(ref, inputs, cores, blocksize),
                "pairs": dask_reference(ref, inputs, cores, blocksize, pairs=True),
                "spark": spark.run(ref, inputs, parse_size(args.split_size), args.data / f"spark-{job}"),
            }
            out = args.data / f"out-{job}"
            if job in DATAFLOW:
                job_s, rss, result = run_dataflow(job, [inputs[0].parent], args.split_size)
                wall = job_s
                runs["dynamr"] = (job_s, result)
            else:
                wall, job_s, rss = run_dynamr(job, [inputs[0]] if job == "sort" else [inputs[0].parent], out,
                                              4 if job != "grep" else 2, args.split_size)
                runs["dynamr"] = (job_s, dynamr_result(ref, out))
            wrong = [name for name, run in runs.items() if run is not None and run[1] != expected]
            secs = {name: (run[0] if run else None) for name, run in runs.items()}
            print(f"{job:<20}{wall:>10.2f}s{job_s:>9.2f}s{single:>8.2f}s{_cell(secs['multi'], 9)}"
                  f"{_cell(secs['dask'], 10)}{_cell(secs['pairs'], 11)}{_cell(secs['spark'], 9)}"
                  f"{_ratio(job_s, single, 10)}{_ratio(job_s, secs['multi'], 11)}{_ratio(job_s, secs['dask'], 9)}"
                  f"{_ratio(job_s, secs['pairs'], 9)}{_ratio(job_s, secs['spark'], 10)}{rss:>8.0f}MiB  "
                  + ("all equal" if not wrong else "DIFFER: " + ", ".join(wrong)), flush=True)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
