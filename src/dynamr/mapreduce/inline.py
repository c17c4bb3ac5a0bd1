"""Run a whole job in this process, one task after another, over local files.

The reference execution of a job: the same task code (:mod:`dynamr.mapreduce.tasks`), the same splits and
shuffle, with no cluster. Tests compare the distributed runner against it (:func:`run_inline`); the
command line always runs on a cluster, the embedded one by default.

Between steps, reduce outputs stay encoded runs (records, not text), and become the next step's map input.
The last step writes ``part-NNNNN`` files (compressed, with the codec's ending, for a job's
``OUTPUT_COMPRESSION``) and a ``_SUCCESS`` marker into an output directory that must not exist yet.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dynamr.errors import BadRequestError
from dynamr.mapreduce.api import MRJob, check_formats
from dynamr.mapreduce.compressed import compressed_blocks, suffix_of
from dynamr.mapreduce.inputs import expand_inputs
from dynamr.mapreduce.runs import IncomparableKeys, decode_run, use_total_order
from dynamr.mapreduce.splits import LocalFile, plan_splits
from dynamr.mapreduce.tasks import (
    OutputBatch,
    batches,
    encode_batches,
    format_batches,
    input_reader,
    reduce_batches,
    run_map,
)

DEFAULT_SPLIT_SIZE = 64 * 1024 * 1024


@dataclass
class JobResult:
    output: Path
    parts: list[Path]
    counters: dict[tuple[str, str], int] = field(default_factory=dict)
    map_tasks: int = 0
    reduce_tasks: int = 0
    seconds: float = 0.0


def check_output(output: Path) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise BadRequestError(f"output {output} already exists; choose another or remove it first")


def _read_file(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            yield data


def sample_keys(job: MRJob, sources: Sequence[Iterator[tuple[object, object]]], per_split: int = 1000,
                limit: int = 20000) -> list[object]:
    """Map output keys of the first records of evenly chosen splits: the sample for range partitioning."""
    step = job.steps()[0]
    keys: list[object] = []
    stride = max(1, len(sources) // max(1, limit // per_split))
    for records in list(sources)[::stride]:
        if step.mapper_stream is not None:  # a mapper of the whole stream: the first records of each
            keys.extend(k for k, _ in itertools.islice(step.mapper_stream(iter(records)), per_split))
            continue
        for taken, (key, value) in enumerate(records):
            if taken >= per_split:
                break
            produced = step.mapper(key, value) if step.mapper is not None else [(key, value)]
            keys.extend(k for k, _ in produced)
    return keys


def run_inline(job: MRJob, inputs: Sequence[Path], output: Path, *, num_reducers: int | None = None,
               split_size: int = DEFAULT_SPLIT_SIZE, buffer_records: int = 1_000_000,
               workdir: Path | None = None) -> JobResult:
    """Run a job in this process; keys that do not compare (None, mixed types) make it start over with
    every sort in the total order, as a task process does."""
    use_total_order(False)
    try:
        try:
            return _run_inline(job, inputs, output, num_reducers, split_size, buffer_records, workdir)
        except IncomparableKeys:
            use_total_order()
            job.reset_counters()
            return _run_inline(job, inputs, output, num_reducers, split_size, buffer_records, workdir)
    finally:
        use_total_order(False)


def _run_inline(job: MRJob, inputs: Sequence[Path], output: Path, num_reducers: int | None, split_size: int,
                buffer_records: int, workdir: Path | None) -> JobResult:
    check_formats(job)
    files = expand_inputs(inputs)
    check_output(output)
    steps = job.steps()
    started = time.perf_counter()
    result = JobResult(output=output, parts=[])
    scratch = Path(tempfile.mkdtemp(prefix="dynamr-inline-", dir=workdir))
    try:
        splits = plan_splits([(str(f), f.stat().st_size) for f in files], split_size,
                             whole=frozenset(str(f) for f in files if job.whole_input(str(f))))
        reader = input_reader(job, steps[0])
        first_reducers = steps[0].num_reducers or num_reducers or job.NUM_REDUCERS or 1
        if job.wants_sample():
            job.partition_state = job.partition_sample(
                sample_keys(job, [reader(LocalFile(Path(s.path)), s) for s in splits]), first_reducers)
        sources: list[tuple[str, Iterator[tuple[object, object]]]] = [
            (s.path, reader(LocalFile(Path(s.path)), s)) for s in splits]
        for index, step in enumerate(steps):
            last = index == len(steps) - 1
            reducers = 0 if step.map_only else (step.num_reducers or num_reducers or job.NUM_REDUCERS or 1)
            step_dir = scratch / f"step-{index}"
            map_outputs: list[dict[int, Path]] = []
            for task, (path, records) in enumerate(sources):
                job.input_path = path
                job.input_start = splits[task].start if index == 0 else 0
                outputs: dict[int, Path] = {}

                def sink(partition: int, blocks: Iterator[bytes], task: int = task,
                         outputs: dict[int, Path] = outputs, step_dir: Path = step_dir) -> None:
                    path = step_dir / f"map-{task}-{partition}.run"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with open(path, "wb") as out:
                        for block in blocks:
                            out.write(block)
                    outputs[partition] = path

                run_map(job, step, records, reducers, step_dir / "spill", sink, buffer_records)
                map_outputs.append(outputs)
                result.map_tasks += 1
            finals: list[tuple[int, Iterator[OutputBatch]]]
            if step.map_only:
                finals = [(task, batches(decode_run(_read_file(out[0])))) for task, out in enumerate(map_outputs)]
            else:
                finals = []
                for partition in range(reducers):
                    runs = [_read_file(out[partition]) for out in map_outputs if partition in out]
                    finals.append((partition, reduce_batches(step, runs, step_dir / "spill", buffer_records)))
                    result.reduce_tasks += 1
            if last:
                output.mkdir(parents=True, exist_ok=True)
                codec = job.OUTPUT_COMPRESSION
                for number, stream in finals:
                    part = output / f"part-{number:05d}{suffix_of(codec or '')}"
                    blocks = format_batches(stream, job.OUTPUT_FORMAT)
                    with open(part, "wb") as out:
                        for block in blocks if codec is None else compressed_blocks(blocks, codec):
                            out.write(block)
                    result.parts.append(part)
                (output / "_SUCCESS").write_bytes(b"")
            else:
                next_sources: list[tuple[str, Iterator[tuple[object, object]]]] = []
                for number, stream in finals:
                    run_file = step_dir / f"out-{number}.run"
                    with open(run_file, "wb") as out:
                        for block in encode_batches(stream):
                            out.write(block)
                    next_sources.append(("", decode_run(_read_file(run_file))))
                sources = next_sources
        result.counters = job.counters()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.seconds = time.perf_counter() - started
    return result
