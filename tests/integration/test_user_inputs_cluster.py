"""User inputs through real task processes: mrjob's `yield None` idiom, and a warning for undecodable text."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import dynamr
from tests.mrdata import read_json_parts

MOST_USED_WORD = '''
from dynamr.mapreduce import MRJob, MRStep

class MostUsedWord(MRJob):
    def steps(self):
        return [MRStep(mapper=self.words, combiner=self.count, reducer=self.count_to_none),
                MRStep(reducer=self.pick)]
    def words(self, _, line):
        for word in line.split():
            yield word.lower(), 1
    def count(self, word, counts):
        yield word, sum(counts)
    def count_to_none(self, word, counts):
        yield None, (sum(counts), word)
    def pick(self, _, pairs):
        yield max(pairs)
'''


def test_most_used_word_with_none_keys_and_latin1_input_in_an_embedded_run(tmp_path: Path) -> None:
    job = tmp_path / "mostused.py"
    job.write_text(MOST_USED_WORD)
    (tmp_path / "a.txt").write_bytes(("the café and the hat\nthe end\n" * 40).encode("latin-1"))
    run = dynamr("run", str(job), str(tmp_path / "a.txt"), "-o", str(tmp_path / "out"), "-r", "2",
                 "--split-size", "300", cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr
    assert read_json_parts(tmp_path / "out") == [(120, "the")]
    warnings = [line for line in run.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "40 byte(s) of input were not valid" in warnings[0], run.stderr
