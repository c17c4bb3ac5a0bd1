"""Word count with in-mapper combining: each map task counts its words in a Counter, then emits each word once.

The classic pattern for jobs whose map output has few distinct keys (Lin and Dyer, "Data-Intensive Text
Processing with MapReduce", section 3.1): counting runs in C (``Counter.update``) instead of one yielded
record per word, so a map task emits thousands of records instead of millions. The shuffle, the reducers
and the output are the same as :mod:`wordcount`'s.
"""

import re
from collections import Counter

from dynamr.mapreduce import MRJob

WORD = re.compile(r"[a-z0-9']+")


class InMapperWordCount(MRJob):
    def mapper_init(self):
        self.counts = Counter()

    def mapper(self, offset, line):
        self.counts.update(WORD.findall(line.lower()))
        return ()

    def mapper_final(self):
        yield from self.counts.items()

    def combiner(self, word, counts):
        yield word, sum(counts)

    def reducer(self, word, counts):
        yield word, sum(counts)
