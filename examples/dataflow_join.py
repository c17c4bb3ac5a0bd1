"""A join of two data sets: the words two texts share, with how often each text uses them.

    python examples/dataflow_join.py LEFT RIGHT

prints ``word<TAB>count in LEFT<TAB>count in RIGHT`` for every word in both (an inner join of the two
word counts on the word), most frequent in LEFT first. LEFT and RIGHT are files or directories.
"""

import sys

from dynamr.dataflow import Dataset, Flow


def build(flow: Flow, left: str, right: str) -> Dataset:
    def counts(path: str) -> Dataset:
        return flow.text(path).flat_map(str.split).map(str.lower).frequencies()

    return counts(left).join(counts(right))


def main(args: list[str]) -> None:
    if len(args) != 2:
        raise SystemExit("usage: python examples/dataflow_join.py LEFT RIGHT")
    rows = build(Flow(), *args).run()
    for word, (left, right) in sorted(rows, key=lambda row: (-row[1][0], row[0])):
        print(f"{word}\t{left}\t{right}")


if __name__ == "__main__":
    main(sys.argv[1:])
