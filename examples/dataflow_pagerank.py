"""PageRank over a small graph, a fixed number of iterations driven by a Python loop.

    python examples/dataflow_pagerank.py EDGES_FILE [ITERATIONS]

Each line of EDGES_FILE is ``source target``. Every iteration is a graph of its own: the links joined
with the current ranks, each page's rank shared among its targets, summed per target (combined map-side)
and damped: ``rank = 0.15 + 0.85 * sum of shares`` (pages no link reaches drop out, as in Spark's
example). The ranks each iteration returns are fed into the next one. Prints ``page<TAB>rank`` lines,
highest first, after ITERATIONS (default 10).
"""

import operator
import sys

from dynamr.dataflow import Flow, Session


def read_links(path: str) -> dict[str, list[str]]:
    links: dict[str, list[str]] = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                source, target = line.split()
                links.setdefault(source, []).append(target)
    return links


def shares(page_links_rank):
    _, (targets, rank) = page_links_rank
    return [(target, rank / len(targets)) for target in targets]


def pagerank(links: dict[str, list[str]], iterations: int, session: Session | None = None) -> dict[str, float]:
    ranks = {page: 1.0 for page in links}
    for _ in range(iterations):
        flow = Flow(session)
        joined = flow.feed(sorted(links.items())).join(flow.feed(sorted(ranks.items())))
        summed = joined.flat_map(shares).reduce_by_key(operator.add)
        ranks = dict(summed.map_values(lambda total: 0.15 + 0.85 * total).run())
    return ranks


def main(args: list[str]) -> None:
    if not args:
        raise SystemExit("usage: python examples/dataflow_pagerank.py EDGES_FILE [ITERATIONS]")
    iterations = int(args[1]) if len(args) > 1 else 10
    with Session.start_embedded() as session:  # one embedded cluster for every iteration
        ranks = pagerank(read_links(args[0]), iterations, session)
    for page, rank in sorted(ranks.items(), key=lambda item: (-item[1], item[0])):
        print(f"{page}\t{rank:.6f}")


if __name__ == "__main__":
    main(sys.argv[1:])
