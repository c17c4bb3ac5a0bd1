"""A stateful operation: events of each user cut into sessions, with ``stateful_map``.

    python examples/dataflow_sessions.py EVENTS_FILE... [--gap SECONDS]

Each input line is ``user timestamp`` (seconds). Events are sorted by (user, time) into one partition,
then a stateful multi-map (seed 002) walks them in order carrying (user, time of the last event, session
number) as its state: a new user, or a gap of more than ``--gap`` seconds (default 1800), starts a new
session. Prints ``user<TAB>session<TAB>events<TAB>first<TAB>last`` lines. (One partition keeps each user's
events together in one ordered stream; the sort itself still runs as a distributed job.)
"""

import sys

from dynamr.dataflow import Dataset, Flow


def parse(line: str) -> tuple[str, int]:
    user, timestamp = line.split()
    return user, int(timestamp)


def build(flow: Flow, paths: list[str], gap: int = 1800) -> Dataset:
    def sessionize(state, event):
        user, timestamp = event
        last_user, last_time, number = state
        if user != last_user:
            number = 0
        elif timestamp - last_time > gap:
            number += 1
        return (user, timestamp, number), [((user, number), timestamp)]

    events = flow.text(*paths).filter(str.strip).map(parse)
    numbered = events.sort_by(partitions=1).stateful_map(sessionize, initial=(None, 0, 0))
    return numbered.group_by_key().map(lambda kv: (kv[0][0], kv[0][1], len(kv[1]), min(kv[1]), max(kv[1])))


def main(args: list[str]) -> None:
    gap = 1800
    if "--gap" in args:
        at = args.index("--gap")
        gap = int(args[at + 1])
        args = args[:at] + args[at + 2:]
    if not args:
        raise SystemExit("usage: python examples/dataflow_sessions.py EVENTS_FILE... [--gap SECONDS]")
    for user, session, count, first, last in sorted(build(Flow(), args, gap).run()):
        print(f"{user}\t{session}\t{count}\t{first}\t{last}")


if __name__ == "__main__":
    main(sys.argv[1:])
