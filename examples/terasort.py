"""Sort of 100-byte records in total order across reducers (TeraSort style).

Each input line is a record: a 10-character key then 89 characters of payload. ``PARTITIONER = "range"``
makes dynamr sample the keys before the job runs and give each reducer a contiguous key range, so
part-00000, part-00001, ... read in order are the whole input sorted.
"""

from dynamr.mapreduce import MRJob


class TeraSort(MRJob):
    OUTPUT_FORMAT = "text"
    NUM_REDUCERS = 4
    PARTITIONER = "range"

    def mapper(self, offset, line):
        yield line[:10], line[10:]

    def reducer(self, key, payloads):
        for payload in payloads:
            yield key, payload
