"""Loading a user's job from its source file, with errors that point at the user's code.

The source is executed as a fresh module named after the file. The job is the one :class:`MRJob` subclass
the file defines (or the one named by ``--job-class``), or, in seed 000's form, a pair of subclasses of
:class:`Mapper` and :class:`Reducer`. A file that does not import, or defines no job, is refused with the
traceback of the user's code and a line saying what to do.
"""

from __future__ import annotations

import linecache
import sys
import traceback
import types

from dynamr.errors import BadRequestError
from dynamr.mapreduce.api import Mapper, MRJob, Reducer, job_from_seed_classes


class JobLoadError(BadRequestError):
    """The job's source file failed to import or defines no job."""

    code = "job_load"


def load_job_class(source: str, filename: str, class_name: str | None = None) -> type[MRJob]:
    module_name = "dynamr_job_" + "".join(c if c.isalnum() else "_" for c in filename.rsplit("/", 1)[-1])
    module = types.ModuleType(module_name)
    module.__file__ = filename
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # inspect, tracebacks
        code = compile(source, filename, "exec")
        exec(code, module.__dict__)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__
                                                else None))
        raise JobLoadError(f"the job file {filename} does not import:\n{tb}") from None
    defined = [v for v in vars(module).values() if isinstance(v, type) and v.__module__ == module_name]
    jobs = [c for c in defined if issubclass(c, MRJob) and c is not MRJob]
    if class_name:
        for cls in defined:
            if cls.__name__ == class_name and issubclass(cls, MRJob):
                return cls
        raise JobLoadError(f"{filename} defines no MRJob subclass named {class_name!r} "
                           f"(found: {', '.join(c.__name__ for c in jobs) or 'none'})")
    if len(jobs) == 1:
        return jobs[0]
    if len(jobs) > 1:
        raise JobLoadError(f"{filename} defines several jobs ({', '.join(c.__name__ for c in jobs)}); "
                           "choose one with --job-class")
    mappers = [c for c in defined if issubclass(c, Mapper) and c is not Mapper]
    reducers = [c for c in defined if issubclass(c, Reducer) and c is not Reducer]
    if len(mappers) == 1 and len(reducers) <= 1:
        return job_from_seed_classes(mappers[0], reducers[0] if reducers else None)
    raise JobLoadError(f"{filename} defines no job: write a subclass of dynamr.mapreduce.MRJob, or one "
                       "subclass each of dynamr.mapreduce.Mapper and dynamr.mapreduce.Reducer")
