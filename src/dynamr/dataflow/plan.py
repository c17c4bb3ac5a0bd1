"""The planner: a checked graph becomes stages, each one job of the MapReduce engine.

A stage computes one data set that must exist as data (a *boundary*): an output, a data set read by more
than one operation, or the result of a wide operation followed by another wide operation or a union.
Its map side is one *path* per way records flow in: from a source or an earlier stage's output, through
the narrow operations on the way (a union contributes one path per branch), fused into one function per
path, run once per map task over the task's whole record stream. Its wide operation, if any, is the
shuffle: records meet by key, combined map-side when the reduction allows it. The narrow operations after
the wide one run in the reduce task, on its output. Sources are read where they are needed, never copied;
a boundary's records are written once (msgpack records) and read by every stage that needs them.

Stages run in an order where a stage's inputs are done first (seed 002's done propagation: a data set is
complete only when all of its inputs are), so branch-and-merge graphs complete with every record once.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

from dynamr.dataflow import fast
from dynamr.dataflow.graph import NARROW, SOURCES, WIDE, Dataset, Output, check, parents_of, resolve

#: wide operations whose map side combines (partial results per key before the shuffle)
COMBINING = frozenset({"reduce_by_key", "fold_by_key", "count_by_key", "frequencies", "distinct"})


@dataclass
class Path:
    """Records from ``source`` (a source data set or an earlier stage's result) through ``ops``."""

    source: Dataset
    ops: list[Dataset]
    #: which parent of the wide operation the path feeds (a join's left is 0, right is 1)
    side: int = 0


@dataclass
class Stage:
    number: int
    result: Dataset
    paths: list[Path]
    wide: Dataset | None
    post: list[Dataset]
    outputs: list[Output] = field(default_factory=list)
    #: stages whose results this one reads
    after: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"stage {self.number} ({self.result.label})"


@dataclass
class Plan:
    stages: list[Stage]
    outputs: list[Output]

    def explain(self) -> str:
        lines = []
        for stage in self.stages:
            reads = ", ".join(sorted({_source_label(p.source, self) for p in stage.paths}))
            lines.append(f"{stage.label}: reads {reads}"
                         + (f" (after stage {', '.join(map(str, stage.after))})" if stage.after else ""))
            for path in stage.paths:
                chain = " -> ".join(_op_label(d) for d in path.ops) or "(as read)"
                speed = "C-level" if fast.compile_chain([d.kind for d in path.ops],
                                                         [d.fn for d in path.ops]).c_level else "Python"
                side = f" [side {path.side}]" if stage.wide is not None and stage.wide.kind == "join" else ""
                if path.source.kind == "text" and fast.splits_text_into_words([d.kind for d in path.ops],
                                                                              [d.fn for d in path.ops]):
                    speed += "; words split from whole chunks of text, not line by line"
                lines.append(f"  map{side}: {path.source.label} -> {chain}  (one fused task, {speed})")
            if stage.wide is not None and stage.wide.kind == "aggregate":
                lines.append(f"  aggregate: {stage.wide.fn.describe()} of the whole data set, one partial per map "
                             "task, merged in order by one reduce task")
            elif stage.wide is not None:
                how = _combine_label(stage.wide)
                lines.append(f"  shuffle: {_op_label(stage.wide)} by key"
                             + (f", combined map-side ({how})" if how else ", not combined"))
            if stage.post:
                lines.append("  after the shuffle, in the reduce task: " + " -> ".join(map(_op_label, stage.post)))
            for out in stage.outputs:
                lines.append(f"  output: {out.kind}" + (f" {out.path} ({out.fmt})" if out.kind == "write" else ""))
        return "\n".join(lines)


def _source_label(dataset: Dataset, plan: Plan) -> str:
    for stage in plan.stages:
        if stage.result is dataset:
            return f"the output of stage {stage.number}"
    return f"{dataset.label} ({dataset.kind} source)"


def _op_label(dataset: Dataset) -> str:
    if dataset.kind == "aggregate":
        return f"aggregate({dataset.fn.describe()})"
    fn = dataset.fn
    name = getattr(fn, "__qualname__", getattr(fn, "__name__", type(fn).__name__)) if fn is not None else ""
    return f"{dataset.kind}({name})" if name else dataset.kind


def _combine_label(wide: Dataset) -> str:
    if wide.kind == "reduce_by_key":
        return "running a + b per key" if wide.fn is operator.add else f"{_op_label(wide)} per key"
    return {"fold_by_key": "fold per key", "count_by_key": "Counter of keys, in C",
            "frequencies": "Counter of records, in C", "distinct": "set of records"}.get(wide.kind, "")


def plan(outputs: Sequence[Output]) -> Plan:
    """Stages for the outputs (the graph checked first)."""
    order = check(outputs)
    consumers: dict[int, int] = {}
    for dataset in order:
        for parent in parents_of(dataset):
            consumers[id(parent)] = consumers.get(id(parent), 0) + 1
    boundary = {id(o.dataset_resolved) for o in _resolved(outputs)}
    boundary |= {id(d) for d in order if consumers.get(id(d), 0) > 1 and d.kind not in SOURCES}
    after_wide: dict[int, bool] = {}
    for dataset in order:  # parents first
        parents = parents_of(dataset)
        if dataset.kind in WIDE or dataset.kind == "union":
            for parent in parents:
                if after_wide.get(id(parent)) and id(parent) not in boundary:
                    boundary.add(id(parent))  # a shuffle's result going into another shuffle or a union
        if dataset.kind in WIDE:
            after_wide[id(dataset)] = True
        elif dataset.kind in NARROW:
            parent = parents[0]
            after_wide[id(dataset)] = after_wide.get(id(parent), False) and id(parent) not in boundary
        else:
            after_wide[id(dataset)] = False
    stages: list[Stage] = []
    made: dict[int, Stage] = {}
    for dataset in order:
        if id(dataset) not in boundary or dataset.kind in SOURCES:
            continue
        stage = _stage(len(stages), dataset, boundary, after_wide)
        stage.after = sorted({made[id(p.source)].number for p in stage.paths if id(p.source) in made})
        made[id(dataset)] = stage
        stages.append(stage)
    for output in _resolved(outputs):
        target = output.dataset_resolved
        if target.kind in SOURCES and id(target) not in made:  # a source output as read: a stage reads it
            made[id(target)] = Stage(len(stages), target, [Path(target, [])], None, [])
            stages.append(made[id(target)])
        made[id(target)].outputs.append(output.output)
    return Plan(stages, list(outputs))


@dataclass
class _ResolvedOutput:
    output: Output
    dataset_resolved: Dataset


def _resolved(outputs: Sequence[Output]) -> list[_ResolvedOutput]:
    return [_ResolvedOutput(o, resolve(o.dataset)) for o in outputs]


def _stage(number: int, result: Dataset, boundary: set[int], after_wide: dict[int, bool]) -> Stage:
    post: list[Dataset] = []
    node = result
    wide = None
    if after_wide.get(id(result)):
        while node.kind in NARROW:
            post.append(node)
            node = parents_of(node)[0]
        wide = node
        post.reverse()
        paths = [path for side, parent in enumerate(parents_of(wide))
                 for path in _paths(parent, boundary, side)]
    else:
        paths = _paths(result, boundary, 0, top=True)
    return Stage(number, result, paths, wide, post)


def _paths(dataset: Dataset, boundary: set[int], side: int, top: bool = False) -> list[Path]:
    """Every way records reach ``dataset`` from a source or a boundary, with the narrow operations on it."""
    if dataset.kind in SOURCES or (id(dataset) in boundary and not top):
        return [Path(dataset, [], side)]
    if dataset.kind == "union":
        return [p for parent in parents_of(dataset) for p in _paths(parent, boundary, side)]
    if dataset.kind in NARROW:
        return [Path(p.source, [*p.ops, dataset], side) for p in _paths(parents_of(dataset)[0], boundary, side)]
    raise AssertionError(f"{dataset.label}: a {dataset.kind} inside a map side")  # wide ones are boundaries
