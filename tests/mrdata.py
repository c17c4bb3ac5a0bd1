"""Test inputs for MapReduce: text with a Zipf word distribution over files of uneven sizes."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

from dynamr.mapreduce.loader import load_job_class

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
VOCABULARY = ["the", "then", "there", "this", "that", "thunder", "a", "harbour", "boat", "sea", "light", "Light",
              "don't", "x1", "café"] + [f"w{i}" for i in range(300)]


def write_corpus(root: Path, sizes: list[int], seed: int = 7) -> list[Path]:
    """Files of about ``sizes`` bytes each; lines of 1 to 20 words, some empty, some with punctuation."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(VOCABULARY))]
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, size in enumerate(sizes):
        lines, total = [], 0
        while total < size:
            words = rng.choices(VOCABULARY, weights, k=rng.randint(0, 20))
            line = " ".join(w + rng.choice(["", "", "", ",", "."]) for w in words)
            lines.append(line)
            total += len(line.encode()) + 1
        path = root / f"doc{i:02d}.txt"
        path.write_text("\n".join(lines) + ("\n" if i % 2 else ""))  # some files lack a final newline
        paths.append(path)
    return paths


def write_sort_records(path: Path, count: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits
    with open(path, "w") as out:
        for i in range(count):
            key = "".join(rng.choices(alphabet, k=10))
            out.write(key + f"{i:010d}" + "".join(rng.choices(alphabet, k=79)) + "\n")


def example(name: str) -> type:
    path = EXAMPLES / f"{name}.py"
    return load_job_class(path.read_text(), str(path))


def read_json_parts(output: Path) -> list[tuple[object, object]]:
    records = []
    for part in sorted(output.glob("part-*")):
        for line in part.read_text().splitlines():
            key, value = line.split("\t")
            records.append((json.loads(key), json.loads(value)))
    return records


def write_sized_files(root: Path, count: int, size: int, seed: int = 5) -> list[Path]:
    """``count`` files of about ``size`` bytes, fast: lines drawn from a pool of random Zipf lines."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(VOCABULARY))]
    pool = [" ".join(rng.choices(VOCABULARY, weights, k=rng.randint(1, 16))) for _ in range(4000)]
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        target = int(size * rng.uniform(0.8, 1.2))
        parts, total = [], 0
        while total < target:
            block = "\n".join(rng.choices(pool, k=2000)) + "\n"
            parts.append(block)
            total += len(block.encode())
        path = root / f"file{i:02d}.txt"
        path.write_text("".join(parts))
        paths.append(path)
    return paths
