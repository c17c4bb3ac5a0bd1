"""Sort of 100-byte records in total order across reducers (TeraSort style).

Each input line is a record: a 10-character key then 89 characters of payload. The job samples the keys
before it runs and gives each reducer a contiguous key range, so part-00000, part-00001, ... read in order
are the whole input sorted.
"""

from dynamr.mapreduce import MRJob, RangePartitioner


class TeraSort(MRJob):
    OUTPUT_FORMAT = "text"
    NUM_REDUCERS = 4

    def mapper(self, offset, line):
        yield line[:10], line[10:]

    def partition_sample(self, keys, num_partitions):
        return RangePartitioner.from_sample(keys, num_partitions).boundaries

    def partitioner(self, key, num_partitions):
        return RangePartitioner(self.partition_state or [])(key, num_partitions)

    def reducer(self, key, payloads):
        for payload in payloads:
            yield key, payload
