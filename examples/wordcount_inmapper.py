"""Word count with in-mapper combining: each map task counts its words in a dict, then emits each word once.

The classic pattern for jobs whose map output has few distinct keys (Lin and Dyer, "Data-Intensive Text
Processing with MapReduce", section 3.1): a word costs one dict increment instead of one yielded record,
so a map task emits thousands of records instead of millions. The shuffle, the reducers and the output are
the same as :mod:`wordcount`'s. (A ``defaultdict(int)`` increment per word is faster here than
``Counter.update`` per line, whose per-call overhead outweighs its C loop on lines of a few words.)
"""

import re
from collections import defaultdict

from dynamr.mapreduce import MRJob

WORD = re.compile(r"[a-z0-9']+")


class InMapperWordCount(MRJob):
    def mapper_init(self):
        self.counts = defaultdict(int)

    def mapper(self, offset, line):
        counts = self.counts
        for word in WORD.findall(line.lower()):
            counts[word] += 1
        return ()

    def mapper_final(self):
        yield from self.counts.items()

    def combiner(self, word, counts):
        yield word, sum(counts)

    def reducer(self, word, counts):
        yield word, sum(counts)
