"""MapReduce on the store: write a job as an :class:`MRJob` subclass (or seed 000's Mapper/Reducer)."""

from dynamr.mapreduce.api import Mapper, MRJob, MRStep, Reducer
from dynamr.mapreduce.partition import RangePartitioner, hash_partition

__all__ = ["MRJob", "MRStep", "Mapper", "RangePartitioner", "Reducer", "hash_partition"]
