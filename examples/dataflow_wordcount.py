"""Word count as a dataflow graph: lines, split on whitespace, counted.

    python examples/dataflow_wordcount.py FILE_OR_DIR...

prints one ``word<TAB>count`` line per distinct word (words as ``str.split`` finds them), on the embedded
default. The chain ``flat_map(str.split)`` then ``frequencies()`` is all C code: each map task counts its
split with one ``collections.Counter`` call and no Python frame per word (``Flow.explain`` says so).
"""

import sys

from dynamr.dataflow import Dataset, Flow


def build(flow: Flow, paths: list[str]) -> Dataset:
    return flow.text(*paths).flat_map(str.split).frequencies()


def main(paths: list[str]) -> None:
    if not paths:
        raise SystemExit("usage: python examples/dataflow_wordcount.py FILE_OR_DIR...")
    for word, count in sorted(build(Flow(), paths).run()):
        print(f"{word}\t{count}")


if __name__ == "__main__":
    main(sys.argv[1:])
