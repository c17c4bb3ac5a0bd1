"""Every shipped example, run by the inline runner, equals a plain sequential computation."""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from dynamr.errors import BadRequestError, NotFoundError
from dynamr.mapreduce.inline import run_inline
from dynamr.mapreduce.loader import JobLoadError, load_job_class
from tests.mrdata import example, read_json_parts, write_corpus, write_sort_records

WORD = re.compile(r"[a-z0-9']+")
UNEVEN = [3000, 3000, 60000, 3000, 500, 3000]  # one file 20x the others


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_corpus(tmp_path_factory.mktemp("corpus"), UNEVEN)


def lines_of(files: list[Path]) -> list[tuple[Path, str]]:
    return [(f, line) for f in files for line in f.read_text().splitlines()]


@pytest.mark.parametrize("split_size,reducers,buffer", [(1 << 20, 1, 1_000_000), (997, 3, 50), (4096, 5, 1000)])
@pytest.mark.parametrize("name", ["wordcount", "wordcount_inmapper"])
def test_word_count(corpus: list[Path], tmp_path: Path, split_size: int, reducers: int, buffer: int,
                    name: str) -> None:
    result = run_inline(example(name)(), corpus, tmp_path / "out", num_reducers=reducers,
                        split_size=split_size, buffer_records=buffer)
    expected = Counter(w for _, line in lines_of(corpus) for w in WORD.findall(line.lower()))
    got = read_json_parts(tmp_path / "out")
    assert dict(got) == dict(expected) and len(got) == len(expected)
    assert len(result.parts) == reducers and (tmp_path / "out" / "_SUCCESS").exists()
    assert result.map_tasks >= (sum(f.stat().st_size for f in corpus) // split_size)


def test_inverted_index(corpus: list[Path], tmp_path: Path) -> None:
    run_inline(example("inverted_index")(), corpus, tmp_path / "out", num_reducers=3, split_size=2000)
    expected: dict[str, set[str]] = defaultdict(set)
    for f, line in lines_of(corpus):
        for w in WORD.findall(line.lower()):
            expected[w].add(f.name)
    assert dict(read_json_parts(tmp_path / "out")) == {w: sorted(d) for w, d in expected.items()}


def test_grep_counts_then_sorts_by_count(corpus: list[Path], tmp_path: Path) -> None:
    job = example("grep")({"pattern": r"\bth[a-z]+\b"})
    result = run_inline(job, corpus, tmp_path / "out", num_reducers=2, split_size=3000)
    counts = Counter(m for _, line in lines_of(corpus) for m in re.findall(r"\bth[a-z]+\b", line))
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    assert read_json_parts(tmp_path / "out") == [list(kv) for kv in expected] or \
        read_json_parts(tmp_path / "out") == expected
    assert result.counters[("grep", "matches")] == sum(counts.values())


def test_terasort_is_totally_ordered_across_reducers(tmp_path: Path) -> None:
    data = tmp_path / "records.txt"
    write_sort_records(data, 5000)
    result = run_inline(example("terasort")(), [data], tmp_path / "out", split_size=50_000)
    assert len(result.parts) == 4
    lines = [line for part in sorted((tmp_path / "out").glob("part-*")) for line in part.read_text().splitlines()]
    records = [(line[:10], line[11:]) for line in lines]
    original = [(line[:10], line[10:]) for line in data.read_text().splitlines()]
    assert [k for k, _ in records] == sorted(k for k, _ in original)
    assert sorted(records) == sorted(original)
    sizes = [len(p.read_text().splitlines()) for p in sorted((tmp_path / "out").glob("part-*"))]
    assert min(sizes) > 0.5 * max(sizes), f"sampled ranges should balance reducers: {sizes}"


def test_seed_style_mapper_and_reducer(corpus: list[Path], tmp_path: Path) -> None:
    run_inline(example("seed_wordcount")(), corpus, tmp_path / "out", num_reducers=2, split_size=5000)
    expected: Counter[str] = Counter()
    for _, line in lines_of(corpus):
        for word in line.split():
            word = word.lower().strip(".,;:!?()'\"")
            if word:
                expected[word] += 1
    assert dict(read_json_parts(tmp_path / "out")) == dict(expected)


def test_map_only_job_keeps_records_in_order(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("b\na\nc\n")
    job_cls = load_job_class(
        "from dynamr.mapreduce import MRJob\n"
        "class Upper(MRJob):\n"
        "    def mapper(self, k, line):\n"
        "        yield None, line.upper()\n"
        "    def steps(self):\n"
        "        from dynamr.mapreduce import MRStep\n"
        "        return [MRStep(mapper=self.mapper)]\n", "upper.py")
    run_inline(job_cls(), [src], tmp_path / "out")
    assert (tmp_path / "out" / "part-00000").read_text() == 'null\t"B"\nnull\t"A"\nnull\t"C"\n'


def test_bad_inputs_are_refused_before_running(corpus: list[Path], tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(BadRequestError, match="already exists"):
        run_inline(example("wordcount")(), corpus, tmp_path / "taken")
    with pytest.raises(NotFoundError, match="does not exist"):
        run_inline(example("wordcount")(), [tmp_path / "missing.txt"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_job_files_that_do_not_load_say_why() -> None:
    with pytest.raises(JobLoadError, match=r"does not import:[\s\S]*line 2[\s\S]*ZeroDivisionError"):
        load_job_class("x = 1\ny = 1 / 0\n", "broken.py")
    with pytest.raises(JobLoadError, match="defines no job"):
        load_job_class("x = 1\n", "empty.py")
    with pytest.raises(JobLoadError, match="SyntaxError"):
        load_job_class("def (:\n", "syntax.py")


def test_user_exceptions_propagate_with_their_traceback(corpus: list[Path], tmp_path: Path) -> None:
    job_cls = load_job_class(
        "from dynamr.mapreduce import MRJob\n"
        "class Bad(MRJob):\n"
        "    def mapper(self, k, line):\n"
        "        if 'harbour' in line:\n"
        "            raise ValueError('bad record: ' + line[:10])\n"
        "        yield line, 1\n", "bad.py")
    with pytest.raises(ValueError, match="bad record") as info:
        run_inline(job_cls(), corpus, tmp_path / "out")
    assert any(str(entry.path) == "bad.py" and entry.lineno + 1 == 5 for entry in info.traceback)
    assert os.path.exists(tmp_path) and not (tmp_path / "out" / "_SUCCESS").exists()
