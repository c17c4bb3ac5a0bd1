"""The N most frequent words of a text, kept small all the way: each map task keeps only its top N.

    python examples/dataflow_topwords.py N FILE_OR_DIR...

Words are counted (``frequencies``), then every count goes under one key as a one-item list, and
``reduce_by_key`` merges lists keeping the N largest: the merge runs map-side first, so each task sends
only its N best to the single reducer. Prints ``word<TAB>count`` lines, most frequent first (ties by word).
"""

import heapq
import sys
from functools import partial

from dynamr.dataflow import Dataset, Flow


def order(item: tuple[str, int]) -> tuple[int, str]:
    word, count = item
    return -count, word  # most frequent first; ties by word


def keep_top(n: int, a: list, b: list) -> list:
    # lists come back from the shuffle as tuples: join them as lists
    return heapq.nsmallest(n, [*a, *b], key=order)


def build(flow: Flow, n: int, paths: list[str]) -> Dataset:
    counts = flow.text(*paths).flat_map(str.split).frequencies()
    return counts.map(lambda item: (0, [item])).reduce_by_key(partial(keep_top, n)).flat_map(lambda kv: kv[1])


def main(args: list[str]) -> None:
    if len(args) < 2:
        raise SystemExit("usage: python examples/dataflow_topwords.py N FILE_OR_DIR...")
    n = int(args[0])
    for word, count in sorted(build(Flow(), n, args[1:]).run(), key=order):
        print(f"{word}\t{count}")


if __name__ == "__main__":
    main(sys.argv[1:])
