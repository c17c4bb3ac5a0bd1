"""Dataflow graphs (seed 002) and running jobs from Python: :class:`Flow`, :class:`Session`.

Names are loaded on first use, so a task process that runs a stage (:mod:`dynamr.dataflow.stage`) does
not import the client side.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dynamr.dataflow.graph import Dataset, Flow, GraphError, Output
    from dynamr.dataflow.run import Results
    from dynamr.dataflow.session import JobFailedError, JobOutput, Session

__all__ = ["Dataset", "Flow", "GraphError", "JobFailedError", "JobOutput", "Output", "Results", "Session"]
_WHERE = {"Dataset": "graph", "Flow": "graph", "GraphError": "graph", "Output": "graph", "JobFailedError": "session",
          "JobOutput": "session", "Results": "run", "Session": "session"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'dynamr.dataflow' has no attribute {name!r}")
    importlib.import_module("dynamr.dataflow.run")  # the graph's runner registers itself (graph.ENGINE)
    return getattr(importlib.import_module(f"dynamr.dataflow.{_WHERE[name]}"), name)
