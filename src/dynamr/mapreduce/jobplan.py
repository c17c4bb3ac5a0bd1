"""A job's plan as the coordinator takes it: every field checked (:func:`check_plan`), and kept on disk
(:func:`dump_plan`, :func:`load_plan`, which also reads the JSON earlier versions kept)."""

from __future__ import annotations

import json

from dynamr.errors import BadRequestError
from dynamr.mapreduce.compressed import CODECS
from dynamr.mapreduce.splits import INPUT_FORMATS
from dynamr.rpc.codec import pack_any, pack_record, unpack_record
from dynamr.rpc.messages import JobPlan, StepPlan


def check_plan(plan: JobPlan) -> None:
    """Validate every field of a plan; a bad plan raises :class:`BadRequestError` saying what to fix."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise BadRequestError(message)

    for name in ("source", "source_name", "output", "input_format", "local_intermediate"):
        need(isinstance(getattr(plan, name), str), f"job plan field {name} must be a string")
    need(plan.input_format in INPUT_FORMATS,
         f"unknown input format {plan.input_format!r} ({', '.join(INPUT_FORMATS)})")
    need(isinstance(plan.whole_inputs, tuple) and all(isinstance(p, str) for p in plan.whole_inputs),
         "whole inputs must be a list of paths")
    need(isinstance(plan.steps, tuple) and bool(plan.steps), "the job has no steps")
    for number, step in enumerate(plan.steps):
        need(isinstance(step, StepPlan) and isinstance(step.map_only, bool) and type(step.reducers) is int,
             f"step {number}: map_only must be true or false and reducers a whole number")
        need(step.reducers >= 0, f"step {number}: the number of reducers must be 0 or more (0: map only), "
                                 f"not {step.reducers}")
        need(step.map_only or step.reducers > 0, f"step {number} has a reducer but 0 reduce tasks; use -r 1 or more")
    need(isinstance(plan.inputs, tuple), "inputs must be a list of [path, size] pairs")
    for item in plan.inputs:
        need(isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) and type(item[1]) is int
             and item[1] >= 0, "each input must be a path and a size in bytes")
    need(type(plan.task_slots) is int and plan.task_slots >= 0, "task slots must be a whole number, 0 or more")
    for name in ("split_size", "chunk_size", "buffer_records"):
        value = getattr(plan, name)
        need(type(value) is int and value > 0, f"{name.replace('_', ' ')} must be a positive whole number, "
                                               f"not {value!r}")
    need(isinstance(plan.options, tuple) and all(isinstance(o, tuple) and len(o) == 2 and isinstance(o[0], str)
                                                 and isinstance(o[1], str) for o in plan.options),
         "job options must map strings to strings")
    need(isinstance(plan.partition_state, bytes), "partition state must be bytes")
    need(plan.job_class is None or isinstance(plan.job_class, str), "job class must be a name")
    need(isinstance(plan.process_group, str) and len(plan.process_group) <= 100,
         "process group must be a name of at most 100 characters")
    need(plan.output_compression in ("", *CODECS),
         f"output compression must be one of {', '.join(CODECS)}, not {plan.output_compression!r}")
    for flag in ("local_inputs", "local_output", "skip_bad_records", "combine_inputs"):
        need(isinstance(getattr(plan, flag), bool), f"job plan field {flag} must be true or false")


def dump_plan(plan: JobPlan) -> bytes:
    """A plan as the coordinator keeps it (msgpack of the record)."""
    return pack_record(plan)


def load_plan(stored: bytes | str) -> JobPlan:
    """A kept plan, checked (also the JSON form earlier versions kept)."""
    if isinstance(stored, str):  # written before plans were records
        raw = json.loads(stored)
        raw["steps"] = tuple(StepPlan(**s) for s in raw["steps"])
        raw["inputs"] = tuple(tuple(i) for i in raw["inputs"])
        raw["options"] = tuple(sorted(raw.get("options", {}).items()))
        state = raw.pop("partition_state", None)
        plan = JobPlan(**raw, partition_state=b"" if state is None else pack_any(state))
    else:
        plan = unpack_record(JobPlan, stored)
    check_plan(plan)
    return plan
