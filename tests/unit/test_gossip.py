"""Health gossip's table (dynamr.store.gossip): newest version per node wins, in any order."""

from __future__ import annotations

import random

from dynamr.rpc import messages as m
from dynamr.store.gossip import HealthTable, gossip_targets

MEMBERS = ("n1", "n2", "n3", "n4")


def rec(node: str, generation: int, beat: int, keys: int = 0) -> m.HealthRecord:
    return m.HealthRecord(node_id=node, generation=generation, beat=beat, epoch="e", down=(), keys=keys,
                          hints=0, disk_free=0, storage_error="")


def test_a_newer_beat_or_a_newer_generation_replaces_a_record_and_nothing_older_does() -> None:
    table = HealthTable("n1")
    assert table.merge([rec("n2", 5, 10)], now=1.0, members=MEMBERS) == ["n2"]
    assert table.merge([rec("n2", 5, 9), rec("n2", 5, 10, keys=99)], now=2.0, members=MEMBERS) == []
    assert table.get("n2") == rec("n2", 5, 10)
    assert table.merge([rec("n2", 6, 1)], now=3.0, members=MEMBERS) == ["n2"]  # restarted
    assert table.merge([rec("n2", 5, 500)], now=4.0, members=MEMBERS) == []  # its previous run, late
    assert [(s.record.beat, s.age) for s in table.seen(10.0)] == [(1, 7.0)]


def test_nobody_reports_for_us_but_us_and_non_members_are_ignored_or_forgotten() -> None:
    table = HealthTable("n1")
    table.set_own(rec("n1", 1, 3), now=0.0)
    assert table.merge([rec("n1", 9, 9), rec("x9", 1, 1), rec("n3", 1, 1)], now=1.0, members=MEMBERS) == ["n3"]
    assert table.get("n1") == rec("n1", 1, 3) and table.get("x9") is None
    table.forget(["n1", "n2"])
    assert [r.node_id for r in table.records()] == ["n1"]


def test_tables_converge_whatever_the_order_duplication_and_loss_of_merges() -> None:
    for seed in range(200):
        rng = random.Random(seed)
        tables = {n: HealthTable(n) for n in MEMBERS}
        beats = dict.fromkeys(MEMBERS, 0)
        in_flight: list[tuple[str, tuple[m.HealthRecord, ...]]] = []
        for step in range(60):
            node = rng.choice(MEMBERS)
            beats[node] += 1
            tables[node].set_own(rec(node, 1, beats[node]), now=step)
            for peer in gossip_targets([p for p in MEMBERS if p != node], rng):
                if rng.random() < 0.3:
                    continue  # lost
                in_flight.append((peer, tables[node].records()))
            rng.shuffle(in_flight)  # reordered
            for _ in range(rng.randint(0, len(in_flight))):
                peer, records = in_flight.pop()
                tables[peer].merge(records, now=step, members=MEMBERS)
                if rng.random() < 0.2:
                    in_flight.append((peer, records))  # duplicated
        for peer, records in in_flight:
            tables[peer].merge(records, now=99, members=MEMBERS)
        for _ in range(3):  # a few quiet rounds of everyone gossiping to everyone
            for node in MEMBERS:
                for peer in MEMBERS:
                    if peer != node:
                        tables[peer].merge(tables[node].records(), now=100, members=MEMBERS)
        want = tuple(rec(n, 1, beats[n]) for n in MEMBERS if beats[n])
        for node in MEMBERS:
            assert tables[node].records() == want, f"seed {seed}: {node}"
