"""Aggregations of a whole data set, as pure logic: however the records are cut into map tasks, one partial
per task merged in order gives what Python gives over the whole list."""

from __future__ import annotations

import functools
import heapq
import itertools
import operator
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamr.dataflow import Flow, GraphError
from dynamr.dataflow import aggregate as agg


def cut(records: list[Any], cuts: list[int]) -> list[list[Any]]:
    """The records as consecutive tasks (some of them empty), cut at the given places."""
    places = sorted(min(c, len(records)) for c in cuts)
    bounds = [0, *places, len(records)]
    return [records[a:b] for a, b in itertools.pairwise(bounds)]


def aggregated(how: agg.Aggregation, tasks: list[list[Any]]) -> list[Any]:
    return how.finish(how.merge([how.task(iter(t)) for t in tasks]))


def by_length(word: str) -> int:
    return len(word)


def longer(a: str, b: str) -> str:
    return a if len(a) >= len(b) else b


CASES: list[tuple[str, agg.Aggregation, Any]] = [
    ("count", agg.Count(), lambda rs: [len(rs)]),
    ("min", agg.Reduce(min, "min"), lambda rs: [min(rs)] if rs else []),
    ("max by key", agg.Reduce(max, "max", by_length), lambda rs: [max(rs, key=by_length)] if rs else []),
    ("min by key", agg.Reduce(min, "min", by_length), lambda rs: [min(rs, key=by_length)] if rs else []),
    # concatenation is associative but not commutative: partials must meet in the data set's order
    ("reduce in order", agg.Reduce(operator.add), lambda rs: ["".join(rs)] if rs else []),
    ("reduce, first longest", agg.Reduce(longer), lambda rs: [functools.reduce(longer, rs)] if rs else []),
    ("fold into a set", agg.Fold(frozenset(), lambda s, w: s | {w}, operator.or_), lambda rs: [frozenset(rs)]),
    ("fold in order", agg.Fold("", operator.add, operator.add), lambda rs: ["".join(rs)]),
    ("top 3 by key", agg.Top(3, by_length), lambda rs: heapq.nlargest(3, rs, key=by_length)),
    ("smallest 4", agg.Top(4, smallest=True), lambda rs: sorted(rs)[:4]),
    ("take 5", agg.Take(5), lambda rs: rs[:5]),
]


@settings(max_examples=150, deadline=None)
@given(records=st.lists(st.text(alphabet="abc", max_size=4), max_size=30),
       cuts=st.lists(st.integers(0, 30), max_size=6), case=st.sampled_from(CASES))
def test_partials_merged_in_order_give_the_whole_lists_answer(records: list[str], cuts: list[int],
                                                              case: tuple[str, agg.Aggregation, Any]) -> None:
    _, how, expected = case
    assert aggregated(how, cut(records, cuts)) == expected(records)


@settings(max_examples=100, deadline=None)
@given(numbers=st.lists(st.integers(-1000, 1000), max_size=40), cuts=st.lists(st.integers(0, 40), max_size=6))
def test_sum_and_mean(numbers: list[int], cuts: list[int]) -> None:
    tasks = cut(numbers, cuts)
    assert aggregated(agg.Sum(), tasks) == [sum(numbers)]
    assert aggregated(agg.Mean(), tasks) == ([pytest.approx(sum(numbers) / len(numbers))] if numbers else [])


def test_no_task_at_all_gives_the_neutral_value_or_nothing() -> None:
    assert aggregated(agg.Count(), []) == [0]
    assert aggregated(agg.Sum(), []) == [0]
    assert aggregated(agg.Fold(0, operator.add, operator.add), []) == [0]
    for how in (agg.Mean(), agg.Reduce(min, "min"), agg.Reduce(operator.add), agg.Top(2), agg.Take(2)):
        assert aggregated(how, []) == []


def test_a_tasks_zero_is_its_own_copy() -> None:
    how = agg.Fold([], lambda acc, x: (acc.append(x), acc)[1], operator.add)
    assert aggregated(how, [[1, 2], [3]]) == [[1, 2, 3]]
    assert how.zero == []  # the tasks appended to copies


def test_take_stops_reading_once_it_has_its_records() -> None:
    pulled: list[int] = []

    def records() -> Iterator[int]:
        for i in range(1_000_000):
            pulled.append(i)
            yield i

    assert agg.Take(3).task(records()) == [0, 1, 2]
    assert len(pulled) == 3


def test_the_graph_methods_check_their_arguments() -> None:
    words = Flow().feed(["a", "b"])
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(GraphError, match="n must be a whole number"):
            words.take(bad)  # type: ignore[arg-type]
    with pytest.raises(GraphError, match="top: expected a function"):
        words.top(2, key=3)  # type: ignore[arg-type]
    with pytest.raises(GraphError, match="reduce: expected a function"):
        words.reduce("add")  # type: ignore[arg-type]
    with pytest.raises(GraphError, match="fold: expected a function"):
        words.fold(0, operator.add, combine=1)  # type: ignore[arg-type]


def test_explain_names_the_aggregation_and_its_single_reduce() -> None:
    flow = Flow()
    text = flow.explain(flow.feed([1, 2]).map(abs).top(2))
    assert "aggregate: top 2 of the whole data set, one partial per map task" in text
    assert "map(abs)" in text
