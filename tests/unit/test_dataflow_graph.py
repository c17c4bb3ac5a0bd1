"""The dataflow graph and planner (pure): checks before anything runs, stages, fusion, explain."""

from __future__ import annotations

import itertools
import operator
import random
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamr.dataflow import Flow, GraphError
from dynamr.dataflow.fast import compile_chain, fan_out, is_c_level, words_of
from dynamr.dataflow.graph import check, unused_sources
from dynamr.dataflow.plan import plan


def test_a_cycle_is_refused_before_anything_runs_and_named() -> None:
    flow = Flow()
    source = flow.text("in.txt", name="lines")
    loop = flow.placeholder("loop")
    grown = loop.map(str.upper)
    grown.name = "grown"
    loop.bind(source.union(grown))
    with pytest.raises(GraphError, match=r"cycle: .*loop.*grown|cycle: .*grown.*loop"):
        flow.explain(grown)
    with pytest.raises(GraphError, match="cycle"):
        grown.run()  # refused before a session is even started


def test_an_unbound_placeholder_and_an_empty_run_are_refused() -> None:
    flow = Flow()
    later = flow.placeholder("later")
    with pytest.raises(GraphError, match="placeholder later is never bound"):
        flow.explain(later.map(str.upper))
    with pytest.raises(GraphError, match="nothing to run"):
        flow.run()
    with pytest.raises(GraphError, match="belongs to another Flow"):
        flow.text("a").join(Flow().text("b"))
    with pytest.raises(GraphError, match="expected a function"):
        flow.text("a").map("upper")  # type: ignore[arg-type]


def test_a_source_that_feeds_nothing_is_reported() -> None:
    flow = Flow()
    used = flow.text("a.txt", name="used")
    flow.text("b.txt", name="forgotten")
    needed = check([used.frequencies().collect()])
    flow.text("c.txt", name="read elsewhere").map(str.upper)
    assert [d.label for d in unused_sources(flow, needed)] == ["forgotten"]


def test_a_narrow_chain_is_one_stage_and_a_combinable_reduction_combines_map_side() -> None:
    flow = Flow()
    counts = flow.text("in.txt").flat_map(str.split).map(str.lower).frequencies()
    stages = plan([counts.collect()]).stages
    assert len(stages) == 1 and [d.kind for d in stages[0].paths[0].ops] == ["flat_map", "map"]
    text = counts.explain()
    assert "flat_map(str.split) -> map(str.lower)  (one fused task, C-level; words split from whole chunks" in text
    assert "combined map-side (Counter of records, in C)" in text
    pairs = flow.text("in.txt").map(lambda line: (line, 1)).reduce_by_key(operator.add)
    assert "combined map-side (running a + b per key)" in pairs.explain()
    assert "(one fused task, Python)" in pairs.explain()
    assert "not combined" in flow.text("x").key_by(len).group_by_key().explain()


def test_branches_merge_on_one_map_side_and_shared_results_are_written_once() -> None:
    flow = Flow()
    lines = flow.text("in.txt")
    merged = lines.filter(str.isupper).union(lines.filter(str.islower)).frequencies()
    [stage] = plan([merged.collect()]).stages
    assert [p.source for p in stage.paths] == [lines, lines]  # the source is read where needed
    words = lines.flat_map(str.split)
    shared = words.map(str.lower)  # read by two operations: a stage of its own, written once
    a, b = shared.frequencies(), shared.distinct()
    stages = plan([a.collect(), b.collect()]).stages
    assert [s.result for s in stages] == [shared, a, b]
    assert stages[1].after == [0] and stages[2].after == [0]


def test_operations_after_a_shuffle_run_in_its_reduce_and_a_second_shuffle_is_a_new_stage() -> None:
    flow = Flow()
    counts = flow.text("in.txt").flat_map(str.split).frequencies()
    top = counts.map(lambda kv: (kv[1], kv[0])).filter(lambda kv: kv[0] > 1).sort_by()
    stages = plan([top.collect()]).stages
    assert len(stages) == 2
    assert [d.kind for d in stages[0].post] == ["map", "filter"] and stages[0].wide is counts
    assert stages[1].wide is top and stages[1].paths[0].source is stages[0].result
    join = counts.join(flow.feed([("a", 1)]), how="left")
    assert plan([join.collect()]).stages[-1].paths[1].side == 1


def _naive(kinds: list[str], fns: list[Any], args: list[dict[str, Any]], records: list[Any]) -> list[Any]:
    out = list(records)
    for kind, fn, extra in zip(kinds, fns, args, strict=True):
        if kind == "map":
            out = [fn(r) for r in out]
        elif kind == "flat_map":
            out = [x for r in out for x in fn(r)]
        elif kind == "filter":
            out = [r for r in out if fn(r)]
        elif kind == "map_values":
            out = [(k, fn(v)) for k, v in out]
        elif kind == "key_by":
            out = [(fn(r), r) for r in out]
        elif kind == "stateful_map":
            state, produced = extra["initial"], []
            for r in out:
                state, more = fn(state, r)
                produced.extend(more)
            out = produced
    return out


def _running(state: int, record: Any) -> tuple[int, list[Any]]:
    return state + 1, [(state, record)]


#: pieces a chain is made of (map_values only where records are pairs: right after a key_by)
PIECES: list[list[tuple[str, Any, dict[str, Any]]]] = [
    [("map", str, {})], [("flat_map", lambda r: str(r).split(" "), {})], [("filter", bool, {})], [("map", repr, {})],
    [("stateful_map", _running, {"initial": 0})], [("key_by", len, {}), ("map_values", str, {})],
    [("flat_map", lambda r: [r, r], {})], [("filter", lambda r: len(str(r)) % 2 == 0, {})],
]


@settings(max_examples=200)
@given(chain=st.lists(st.sampled_from(range(len(PIECES))), max_size=5),
       records=st.lists(st.text(alphabet="ab ", max_size=4), max_size=12))
def test_a_fused_chain_gives_what_the_operations_give_one_by_one(chain: list[int], records: list[str]) -> None:
    ops = [op for i in chain for op in PIECES[i]]
    kinds, fns, args = [k for k, _, _ in ops], [f for _, f, _ in ops], [a for _, _, a in ops]
    compiled = compile_chain(kinds, fns, args)
    assert list(compiled.run(iter(records))) == _naive(kinds, fns, args, records)


def test_c_level_is_said_only_of_chains_without_python_functions() -> None:
    word = re.compile(r"\w+")
    assert all(is_c_level(f) for f in (str.split, str.lower, len, int, operator.itemgetter(0), word.findall))
    assert not is_c_level(lambda x: x)
    assert compile_chain(["flat_map", "map"], [word.findall, str.lower]).c_level
    assert not compile_chain(["map"], [lambda x: x]).c_level
    assert not compile_chain(["stateful_map"], [_running], [{"initial": 0}]).c_level


def test_several_paths_over_one_stream_each_see_every_record() -> None:
    records = list(range(10_000))
    evens = compile_chain(["filter"], [lambda x: x % 2 == 0]).run
    tripled = compile_chain(["flat_map"], [lambda x: (x, x, x)]).run
    got = list(fan_out(iter(records), [evens, tripled], batch=7))
    assert sorted(got) == sorted([x for x in records if x % 2 == 0] + records * 3)
    rng = random.Random(3)
    sample = [rng.randrange(100) for _ in range(50)]
    assert list(fan_out(iter(sample), [iter])) == sample
    assert list(itertools.islice(fan_out(itertools.count(), [iter, iter]), 4)) == [0, 1, 2, 3]


@settings(max_examples=200)
@given(lines=st.lists(st.text(alphabet="ab \t\u3000", max_size=12), max_size=20), cuts=st.integers(1, 4),
       piece=st.integers(1, 30))
def test_words_split_a_piece_at_a_time_are_the_words_of_the_whole_text(lines: list[str], cuts: int,
                                                                        piece: int) -> None:
    text = "".join(line + "\n" for line in lines)
    step = max(1, len(lines) // cuts)
    chunks = ["".join(line + "\n" for line in lines[i:i + step]) for i in range(0, len(lines), step)]
    assert "".join(chunks) == text
    assert list(words_of(chunks, piece)) == text.split()
