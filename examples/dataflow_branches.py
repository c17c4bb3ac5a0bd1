"""Branch and merge: one input, two branches that treat records differently, merged again.

    python examples/dataflow_branches.py FILE_OR_DIR...

Short lines (under 40 characters) go one way and are counted by their first word; long lines go the other
and are counted by their length in tens of characters; the two branches are merged with ``union`` and
counted per key. Every line is in exactly one branch, so the counts add up to the number of lines: the
merged data set is complete only when both branches are (seed 002's done propagation). Prints
``key<TAB>count`` lines.
"""

import sys

from dynamr.dataflow import Dataset, Flow


def short_key(line: str) -> tuple[str, int]:
    words = line.split()
    return ("short:" + (words[0].lower() if words else ""), 1)


def long_key(line: str) -> tuple[str, int]:
    return (f"long:{len(line) // 10 * 10}+", 1)


def build(flow: Flow, paths: list[str]) -> Dataset:
    lines = flow.text(*paths)
    short = lines.filter(lambda line: len(line) < 40).map(short_key)
    long = lines.filter(lambda line: len(line) >= 40).map(long_key)
    return short.union(long).count_by_key()


def main(paths: list[str]) -> None:
    if not paths:
        raise SystemExit("usage: python examples/dataflow_branches.py FILE_OR_DIR...")
    for key, count in sorted(build(Flow(), paths).run()):
        print(f"{key}\t{count}")


if __name__ == "__main__":
    main(sys.argv[1:])
