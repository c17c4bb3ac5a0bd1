"""Dataflow graphs (seed 002) and running jobs from Python: :class:`Flow`, :class:`Session`."""

from dynamr.dataflow.graph import Dataset, Flow, GraphError, Output
from dynamr.dataflow.run import JobFailedError, JobOutput, Results, Session

__all__ = ["Dataset", "Flow", "GraphError", "JobFailedError", "JobOutput", "Output", "Results", "Session"]
