"""The N most frequent words of a text, kept small all the way: each map task keeps only its top N.

    python examples/dataflow_topwords.py N FILE_OR_DIR...

Words are counted (``frequencies``), then ``smallest(n, key=order)`` picks the N counts that come first
in the order "most frequent first, ties by word": each map task keeps only its N best, so the single task
that merges them gets N records per task, whatever the size of the vocabulary. Prints ``word<TAB>count``
lines in that order.
"""

import sys

from dynamr.dataflow import Dataset, Flow


def order(item: tuple[str, int]) -> tuple[int, str]:
    word, count = item
    return -count, word  # most frequent first; ties by word


def build(flow: Flow, n: int, paths: list[str]) -> Dataset:
    return flow.text(*paths).flat_map(str.split).frequencies().smallest(n, key=order)


def main(args: list[str]) -> None:
    if len(args) < 2:
        raise SystemExit("usage: python examples/dataflow_topwords.py N FILE_OR_DIR...")
    for word, count in build(Flow(), int(args[0]), args[1:]).run():
        print(f"{word}\t{count}")


if __name__ == "__main__":
    main(sys.argv[1:])
