"""Running a dataflow graph on a :class:`~dynamr.dataflow.session.Session`: stage by stage in the
planner's order (:mod:`dynamr.dataflow.plan`), each stage a job of the engine. A stage starts only when the
stages it reads are done; collected records stream back a part at a time while a stage runs.
"""

from __future__ import annotations

import itertools
import secrets
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dynamr.dataflow.graph import ENGINE, SOURCE_FORMATS, Dataset, Output, check, resolve, unused_sources
from dynamr.dataflow.plan import Plan, Stage, plan
from dynamr.dataflow.session import JobFailedError, Session, failure_text, store_parts
from dynamr.dataflow.stage import InputSpec, PathSpec, StageSpec, job_source
from dynamr.errors import BadRequestError
from dynamr.files.client import FileSystem
from dynamr.mapreduce.inputs import expand_inputs, store_inputs
from dynamr.mapreduce.runs import decode_run, encode_run
from dynamr.mapreduce.submit import STORE, stage_input

# --- graphs -------------------------------------------------------------------------------------------------


@dataclass
class Results:
    """Collected records per data set (``results[dataset]``), the plan that ran, and how long each of its
    stage jobs took."""

    records: dict[int, list[Any]] = field(default_factory=dict)
    plan: Plan | None = None
    warnings: list[str] = field(default_factory=list)
    #: (stage job name, seconds), in the order they ran
    seconds: list[tuple[str, float]] = field(default_factory=list)

    def __getitem__(self, dataset: Dataset) -> list[Any]:
        return self.records[id(resolve(dataset))]

    def value(self, dataset: Dataset) -> Any:
        """The one record of ``dataset`` (an aggregation such as ``count()``)."""
        records = self[dataset]
        if len(records) != 1:
            what = "no record" if not records else f"{len(records)} records"
            raise BadRequestError(f"{dataset.label} has {what}, not one: value() is for data sets of one record, "
                                  "such as count(); min, max, mean and reduce of an empty data set give none")
        return records[0]


def run_graph(outputs: Sequence[Output], session: Session | None) -> Results:
    own = session is None
    session = session or Session.start_embedded()
    try:
        return _Runner(session, outputs).run()
    finally:
        if own:
            session.close()


class _Runner:
    def __init__(self, session: Session, outputs: Sequence[Output]) -> None:
        self.session = session
        self.outputs = list(outputs)
        self.plan = plan(self.outputs)
        self.run_id = f"flow-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        #: id(dataset) -> directory holding its records (stage results, fed values)
        self.stored: dict[int, str] = {}
        self.scratch: list[str] = []
        #: (job name, seconds) of every stage job run, in order
        self.seconds: list[tuple[str, float]] = []
        #: id(source) -> its files on the store (a cluster session uploads local sources once per run)
        self.uploaded: dict[int, list[str]] = {}

    def run(self) -> Results:
        results = Results(plan=self.plan, seconds=self.seconds)
        needed = check(self.outputs)
        flow = self.outputs[0].dataset.flow
        results.warnings = [f"source {d.label} feeds none of the outputs run" for d in unused_sources(flow, needed)]
        for message in results.warnings:
            warnings.warn(message, stacklevel=4)
        later = {id(p.source) for s in self.plan.stages for p in s.paths}
        try:
            for stage in self.plan.stages:
                self._run_stage(stage, id(stage.result) in later, results)
        finally:
            for directory in [*self.scratch, self.session.scratch(self.run_id)]:
                self.session.remove(directory)
        return results

    def _run_stage(self, stage: Stage, needed_later: bool, results: Results) -> None:
        collects = [o for o in stage.outputs if o.kind == "collect"]
        writes = [o for o in stage.outputs if o.kind == "write"]
        direct = len(writes) == 1 and not collects and not needed_later
        spec = self._spec(stage, writes[0].fmt if direct else "records")
        target = writes[0].path if direct else self.session.scratch(f"{self.run_id}/stage-{stage.number}")
        if not direct:
            self.scratch.append(target)
            self.stored[id(stage.result)] = target
        records: list[Any] = results.records.setdefault(id(stage.result), []) if collects else []

        callbacks = [c.callback for c in collects if c.callback is not None]
        listed = len(callbacks) < len(collects)  # some collect output wants the records returned

        def on_part(data: bytes) -> None:
            for _, value in decode_run([data]):
                for callback in callbacks:
                    callback(value)
                if listed:
                    records.append(value)

        self._submit(spec, f"{self.run_id}-s{stage.number}", target, stage, on_part=on_part if collects else None,
                     compression=writes[0].compression if direct else None)
        for write in ([] if direct else writes):
            copy = StageSpec(files={}, inputs=[InputSpec("records", [PathSpec([], [], [])])], output=write.fmt)
            self._submit(copy, f"{self.run_id}-s{stage.number}-w", write.path, None, source_dir=target,
                         compression=write.compression)
        # (collected records arrived while the stage ran: see _submit's on_part)

    def _spec(self, stage: Stage, output: str) -> StageSpec:
        inputs: list[InputSpec] = []
        by_source: dict[int, int] = {}
        for path in stage.paths:
            index = by_source.get(id(path.source))
            if index is None:
                index = by_source[id(path.source)] = len(inputs)
                fmt = SOURCE_FORMATS.get(path.source.kind, "records")
                inputs.append(InputSpec(fmt, []))
            inputs[index].paths.append(PathSpec([d.kind for d in path.ops], [d.fn for d in path.ops],
                                                [d.args for d in path.ops], path.side))
        wide = stage.wide
        post = PathSpec([d.kind for d in stage.post], [d.fn for d in stage.post], [d.args for d in stage.post]) \
            if stage.post else None
        spec = StageSpec(files={}, inputs=inputs, wide=None if wide is None else wide.kind,
                         fn=None if wide is None else wide.fn,
                         args={} if wide is None else {k: v for k, v in wide.args.items() if k != "partitions"},
                         post=post, output=output)
        spec.files = {}
        for path in stage.paths:
            for file in self._files(path.source):
                spec.files[file] = by_source[id(path.source)]
        return spec

    def _files(self, source: Dataset) -> list[str]:
        """The input files of a stage's input (resolved as the engine will name them)."""
        if id(source) in self.stored:
            return self._list(self.stored[id(source)])
        if source.kind == "feed":
            self.stored[id(source)] = self._feed(source)
            return self._list(self.stored[id(source)])
        paths = source.args["paths"]
        if self.session.embedded:
            if any(p.startswith(STORE) for p in paths):
                raise BadRequestError(f"{source.label}: an embedded session reads local files; connect to a "
                                      "cluster for store: paths")
            return [str(f.resolve()) for f in expand_inputs([Path(p) for p in paths])]
        if id(source) not in self.uploaded:  # once per source, however many paths read it
            self.uploaded[id(source)] = self.session.call(lambda c: self._upload_source(FileSystem(c), source))
        return self.uploaded[id(source)]

    async def _upload_source(self, fs: FileSystem, source: Dataset) -> list[str]:
        out: list[str] = []
        for item in source.args["paths"]:
            remote = await stage_input(fs, self.run_id, item)
            if not item.startswith(STORE):
                self.scratch.append(f"{STORE}/_inputs/{self.run_id}")
            out.extend(path for path, _ in await store_inputs(fs, [remote]))
        return out

    def _list(self, directory: str) -> list[str]:
        if directory.startswith(STORE):
            return [f"{STORE}{p}" for p in self.session.call(lambda c: store_parts(FileSystem(c),
                                                                                   directory[len(STORE):]))]
        return [str(p.resolve()) for p in sorted(Path(directory).glob("part-*"))]

    def _feed(self, source: Dataset) -> str:
        """Fed values, written as files of records split for the map tasks."""
        values = source.args["values"]
        pieces = max(1, min(self.session.partitions, len(values)))
        local = Path(tempfile.mkdtemp(prefix="dynamr-feed-"))
        try:
            for i in range(pieces):
                chunk = values[len(values) * i // pieces:len(values) * (i + 1) // pieces]
                with open(local / f"part-{i:05d}", "wb") as out:
                    for block in encode_run(zip(itertools.repeat(None), chunk)):
                        out.write(block)
            if self.session.embedded:
                target = self.session.scratch(f"{self.run_id}/feed-{source.number}")
                shutil.move(str(local), target)
                self.scratch.append(target)
                return target
            remote = f"/_dataflow/{self.run_id}/feed-{source.number}"
            self.session.call(lambda c: FileSystem(c).put_tree(local, remote))
            self.scratch.append(f"{STORE}{remote}")
            return f"{STORE}{remote}"
        finally:
            shutil.rmtree(local, ignore_errors=True)

    def _submit(self, spec: StageSpec, name: str, output: str, stage: Stage | None, source_dir: str = "",
                on_part: Callable[[bytes], None] | None = None, compression: str | None = None) -> None:
        if source_dir:
            files = self._list(source_dir)
            spec.files = {f: 0 for f in files}
        inputs = [f[len(STORE):] if f.startswith(STORE) else f for f in spec.files]
        spec.files = {k[len(STORE):] if k.startswith(STORE) else k: v for k, v in spec.files.items()}
        reducers = None
        if stage is not None and stage.wide is not None:
            reducers = stage.wide.args.get("partitions") or self.session.partitions
        source = job_source(spec, name)
        started = time.perf_counter()
        status = self.session.call(lambda c: self.session._run(
            c, name, Path(f"{name}.py"), source, [f"{STORE}{i}" if not self.session.embedded else i
                                                  for i in inputs],
            output, reducers=reducers, options={}, job_class="Stage", split_size=self.session.split_size,
            on_part=on_part, process_group=self.session.process_group,  # one program: shared task processes
            compress_output=compression))
        self.seconds.append((name, time.perf_counter() - started))
        if status.state != "succeeded":
            raise JobFailedError(failure_text(status))


def explain(outputs: Sequence[Output]) -> str:
    return plan(outputs).explain()


ENGINE.update(run=run_graph, explain=explain)
