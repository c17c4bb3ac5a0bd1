"""Inverted index: for each word, the sorted list of documents (input file names) that contain it."""

import os
import re

from dynamr.mapreduce import MRJob

WORD = re.compile(r"[a-z0-9']+")


class InvertedIndex(MRJob):
    def mapper_init(self):
        self.document = os.path.basename(self.input_path)

    def mapper(self, offset, line):
        for word in set(WORD.findall(line.lower())):
            yield word, self.document

    def combiner(self, word, documents):
        for document in set(documents):
            yield word, document

    def reducer(self, word, documents):
        yield word, sorted(set(documents))
