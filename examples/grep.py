"""Distributed grep in two steps (seed 003): count the matches of a pattern, then sort them by count.

Run with ``-D pattern=REGEX`` (default: words of four letters or more starting with "th").
"""

import re

from dynamr.mapreduce import MRJob, MRStep


class Grep(MRJob):
    def mapper_init(self):
        self.pattern = re.compile(self.options.get("pattern", r"\bth[a-z]{2,}\b"))

    def find(self, offset, line):
        matches = self.pattern.findall(line)
        if matches:
            self.increment_counter("grep", "matches", len(matches))
            for match in matches:
                yield match, 1

    def count(self, match, ones):
        yield match, sum(ones)

    def by_count(self, match, count):
        yield (-count, match), None

    def ordered(self, key, _):
        count, match = key
        yield match, -count

    def steps(self):
        return [MRStep(mapper_init=self.mapper_init, mapper=self.find, combiner=self.count, reducer=self.count),
                MRStep(mapper=self.by_count, reducer=self.ordered, num_reducers=1)]
