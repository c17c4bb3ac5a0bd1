"""The word count, slowed so a failure can be placed in a phase: each map sleeps MAP_SECONDS after its
input, each reduce sleeps REDUCE_SECONDS before its first group (both options: -D MAP_SECONDS=2)."""

import re
import time

from dynamr.mapreduce import MRJob

WORD = re.compile(r"[a-z0-9']+")


class SlowWordCount(MRJob):
    def mapper(self, offset, line):
        for word in WORD.findall(line.lower()):
            yield word, 1

    def mapper_final(self):
        time.sleep(float(self.options.get("MAP_SECONDS", "1.5")))
        return ()

    def combiner(self, word, counts):
        yield word, sum(counts)

    def reducer_init(self):
        time.sleep(float(self.options.get("REDUCE_SECONDS", "3")))

    def reducer(self, word, counts):
        yield word, sum(counts)
