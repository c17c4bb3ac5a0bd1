"""Word count: how often each word occurs in the input text."""

import re

from dynamr.mapreduce import MRJob

WORD = re.compile(r"[a-z0-9']+")


class WordCount(MRJob):
    def mapper(self, offset, line):
        for word in WORD.findall(line.lower()):
            yield word, 1

    def combiner(self, word, counts):
        yield word, sum(counts)

    def reducer(self, word, counts):
        yield word, sum(counts)
