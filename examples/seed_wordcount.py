"""Word count in seed 000's form: a Mapper subclass and a Reducer subclass in one source file."""

from dynamr.mapreduce import Mapper, Reducer

PUNCTUATION = ".,;:!?()'\""


class MyMapper(Mapper):
    def map(self, key, value):
        for word in value.split():
            word = word.lower().strip(PUNCTUATION)
            if word:
                yield word, 1


class MyReducer(Reducer):
    def reduce(self, key, values):
        yield key, sum(values)
