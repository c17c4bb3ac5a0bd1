"""Dataflow graphs and jobs run from Python, on an embedded session and on a 3-node local cluster: every
example's output equals a plain Python computation of the same thing."""

from __future__ import annotations

import bz2
import gzip
import heapq
import importlib.util
import json
import operator
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dynamr.dataflow import Flow, GraphError, JobFailedError, Session
from dynamr.errors import BadRequestError
from dynamr.files.client import FileSystem
from dynamr.store.client import AsyncClient
from tests.integration.conftest import MakeCluster
from tests.mrdata import EXAMPLES, write_corpus


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    with Session.start_embedded(slots=2, split_size=64 * 1024) as started:
        yield started


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root / "a", [90_000, 20_000, 150_000])
    write_corpus(root / "b", [40_000, 60_000], seed=11)
    events = [f"u{rng % 7} {t}" for rng, t in enumerate(sorted(random.Random(5).sample(range(100_000), 600)))]
    (root / "events.txt").write_text("\n".join(events) + "\n")
    edges = random.Random(9).sample([(a, b) for a in range(30) for b in range(30) if a != b], 120)
    (root / "edges.txt").write_text("".join(f"p{a} p{b}\n" for a, b in edges))
    return root


def lines_of(*paths: Path) -> list[str]:
    files = sorted(f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))))
    return [line for f in files for line in f.read_text().splitlines()]


def words_of(*paths: Path) -> Counter[str]:
    return Counter(word for line in lines_of(*paths) for word in line.split())


def expected_sessions(path: Path, gap: int = 1800) -> list[tuple[str, int, int, int, int]]:
    events = sorted((u, int(t)) for u, t in (line.split() for line in lines_of(path)))
    out: dict[tuple[str, int], list[int]] = {}
    last: tuple[str, int] | None = None
    number = 0
    for user, t in events:
        if last is None or user != last[0]:
            number = 0
        elif t - last[1] > gap:
            number += 1
        out.setdefault((user, number), []).append(t)
        last = (user, t)
    return sorted((u, n, len(ts), min(ts), max(ts)) for (u, n), ts in out.items())


def expected_pagerank(links: dict[str, list[str]], iterations: int) -> dict[str, float]:
    ranks = {page: 1.0 for page in links}
    for _ in range(iterations):
        sums: dict[str, float] = {}
        for page, targets in links.items():
            if page in ranks:
                for target in targets:
                    sums[target] = sums.get(target, 0.0) + ranks[page] / len(targets)
        ranks = {page: 0.15 + 0.85 * total for page, total in sums.items()}
    return ranks


def check_examples(session: Session, corpus: Path) -> None:
    """Every dataflow example on ``session`` against plain Python."""
    a, b = corpus / "a", corpus / "b"
    assert dict(load("dataflow_wordcount").build(Flow(session), [str(a)]).run()) == words_of(a)

    left, right = Counter(w.lower() for w in words_of(a).elements()), Counter(w.lower() for w in words_of(b).elements())
    joined = load("dataflow_join").build(Flow(session), str(a), str(b)).run()
    assert sorted(joined) == sorted((w, (left[w], right[w])) for w in left.keys() & right.keys())

    branches = load("dataflow_branches")
    merged = dict(branches.build(Flow(session), [str(a)]).run())
    want = Counter((branches.short_key(line) if len(line) < 40 else branches.long_key(line))[0]
                   for line in lines_of(a))
    assert merged == want and sum(merged.values()) == len(lines_of(a))

    sessions = load("dataflow_sessions").build(Flow(session), [str(corpus / "events.txt")], 1800).run()
    assert sorted(sessions) == expected_sessions(corpus / "events.txt")

    pagerank = load("dataflow_pagerank")
    links = pagerank.read_links(str(corpus / "edges.txt"))
    got = pagerank.pagerank(links, 3, session)
    want_ranks = expected_pagerank(links, 3)
    assert got.keys() == want_ranks.keys()
    assert all(abs(got[p] - want_ranks[p]) < 1e-9 for p in got)

    top = load("dataflow_topwords").build(Flow(session), 5, [str(a)]).run()
    assert top == heapq.nsmallest(5, words_of(a).items(), key=lambda kv: (-kv[1], kv[0]))  # in that order

    check_aggregations(session, corpus)


def check_aggregations(session: Session, corpus: Path) -> None:
    """Whole-data-set aggregations over several files cut into many map tasks, against Python over the lines
    in order (files in the order given): partials must meet in the data set's order."""
    a, b = corpus / "a", corpus / "b"
    lines = [*lines_of(a), *lines_of(b)]
    words = [w for line in lines for w in line.split()]
    flow = Flow(session)
    text = flow.text(str(a), str(b))
    split = text.flat_map(str.split)
    wanted = {
        split.count(): [len(words)],
        split.map(len).sum(): [sum(map(len, words))],
        split.map(len).mean(): [sum(map(len, words)) / len(words)],
        split.max(key=len): [max(words, key=len)],
        text.take(7): lines[:7],
        text.reduce(lambda x, y: x if len(x) >= len(y) else y): [max(lines, key=len)],  # the first longest
        text.map(lambda line: line[:1]).reduce(operator.add): ["".join(line[:1] for line in lines)],
        split.fold(frozenset(), lambda s, w: s | {w[0]}, operator.or_).map(sorted):
            [tuple(sorted({w[0] for w in words}))],
        split.top(3, key=len): heapq.nlargest(3, words, key=len),
        split.sort_by().take(4): sorted(words)[:4],  # parts of a total order, read in part order
        flow.feed([]).count(): [0],
        flow.feed([]).min(): [],
    }
    results = flow.run(*wanted)
    for dataset, want in wanted.items():
        assert results[dataset] == want, dataset.explain()
    assert results.value(next(iter(wanted))) == len(words)
    assert flow.feed([1, 2, 3]).sum().value() == 6
    with pytest.raises(BadRequestError, match="has no record, not one: value"):
        results.value(list(wanted)[-1])


def test_the_examples_compute_what_plain_python_computes(session: Session, corpus: Path) -> None:
    check_examples(session, corpus)


def test_the_examples_on_a_three_node_cluster(make_cluster: MakeCluster, corpus: Path) -> None:
    cluster = make_cluster(3)
    with Session(cluster.seeds, cluster.secret, partitions=3, split_size=64 * 1024) as on_cluster:
        check_examples(on_cluster, corpus)
        # data sets already on the store, and output written there
        on_cluster.call(lambda c: FileSystem(c).put_tree(corpus / "b", "/data/b"))
        flow = Flow(on_cluster)
        counts = flow.text("store:/data/b").flat_map(str.split).frequencies()
        flow.run(counts.write("store:/out/wc"))
        written = b"".join(on_cluster.read_parts("store:/out/wc")).decode().splitlines()
        assert {w: int(n) for w, n in (line.split("\t") for line in written)} == words_of(corpus / "b")
        async def leftovers(client: AsyncClient) -> list[str]:
            fs = FileSystem(client)
            return [p for top in ("/_dataflow", "/_inputs") if await fs.is_dir(top)
                    for p in [e.name for e in await fs.ls(top)]]

        assert on_cluster.call(leftovers) == [], "a run left intermediate data or uploads on the store"


def test_the_callback_gets_every_record_once_and_run_returns_the_same(session: Session, corpus: Path) -> None:
    flow = Flow(session)
    counts = flow.text(str(corpus / "a")).flat_map(str.split).frequencies()
    got: list[Any] = []
    assert counts.run(callback=got.append) == []
    assert sorted(got) == sorted(counts.run()) == sorted(words_of(corpus / "a").items())


def test_a_compressed_text_source_reads_as_its_lines(session: Session, corpus: Path, tmp_path: Path) -> None:
    packed = tmp_path / "a.txt.gz"
    # one gzip member per file of the folder, each ending its last line
    packed.write_bytes(b"".join(gzip.compress(f.read_bytes().rstrip(b"\n") + b"\n")
                                for f in sorted((corpus / "a").iterdir())))
    flow = Flow(session)
    counts = flow.text(str(packed)).flat_map(str.split).frequencies()
    expected = sorted(words_of(corpus / "a").items())
    assert sorted(counts.run()) == expected
    # written compressed: alone (the stage writes its parts), and beside a collect (a copy writes them)
    flow.run(counts.write(str(tmp_path / "gz"), compression="gzip"))
    results = flow.run(counts, counts.write(str(tmp_path / "bz"), "json", compression="bzip2"))
    assert sorted(results[counts]) == expected
    for folder, unpack in (("gz", gzip.decompress), ("bz", bz2.decompress)):
        parts = sorted((tmp_path / folder).glob("part-*"))
        assert parts and all(p.suffix == {"gz": ".gz", "bz": ".bz2"}[folder] for p in parts)
        lines = [line for p in parts for line in unpack(p.read_bytes()).decode().splitlines()]
        got = [(k, int(v)) for k, v in (line.split("\t") for line in lines)] if folder == "gz" else \
            [tuple(json.loads(line)) for line in lines]
        assert sorted(got) == expected
    with pytest.raises(GraphError, match="compression must be one of gzip, bzip2, xz or None, not 'zip'"):
        counts.write(str(tmp_path / "zip"), compression="zip")


def test_several_outputs_of_one_graph_write_drop_and_collect(session: Session, corpus: Path, tmp_path: Path) -> None:
    flow = Flow(session)
    words = flow.text(str(corpus / "b")).flat_map(str.split)
    counts = words.frequencies()
    lengths = words.map(len).frequencies()
    results = flow.run(counts, counts.write(str(tmp_path / "text")), lengths.write(str(tmp_path / "json"), "json"),
                       words.distinct().drop())
    expected = words_of(corpus / "b")
    assert sorted(results[counts]) == sorted(expected.items())
    written = [line.split("\t") for part in sorted((tmp_path / "text").glob("part-*"))
               for line in part.read_text().splitlines()]
    assert {w: int(n) for w, n in written} == expected
    as_json = [json.loads(line) for part in sorted((tmp_path / "json").glob("part-*"))
               for line in part.read_text().splitlines()]
    assert sorted(map(tuple, as_json)) == sorted(Counter(len(w) for w in expected.elements()).items())
    assert "feeds none" not in " ".join(results.warnings)
    assert results.plan is not None and len(results.seconds) >= len(results.plan.stages)


def test_fed_values_sort_and_left_join(session: Session) -> None:
    flow = Flow(session)
    rng = random.Random(4)
    numbers = [rng.randrange(-1000, 1000) for _ in range(3000)]
    assert flow.feed(numbers).sort_by().run() == sorted(numbers)
    assert flow.feed(numbers).sort_by(descending=True, partitions=3).run() == sorted(numbers, reverse=True)
    streamed: list[int] = []  # parts reach the callback as they are written, in order
    assert flow.feed(numbers).sort_by(partitions=3).run(callback=streamed.append) == []
    assert streamed == sorted(numbers)
    people = flow.feed([("ann", 1), ("bob", 2), ("cy", 3)])
    pets = flow.feed([("ann", "cat"), ("ann", "dog"), ("cy", "eel"), ("dee", "owl")])
    assert sorted(people.join(pets, how="left").run()) == [
        ("ann", (1, "cat")), ("ann", (1, "dog")), ("bob", (2, None)), ("cy", (3, "eel"))]
    folded = flow.feed([("a", 1), ("b", 2), ("a", 3)] * 50).fold_by_key(0, operator.add, partitions=2)
    assert sorted(folded.run()) == [("a", 200), ("b", 100)]
    grouped = dict(flow.feed([(i % 3, i) for i in range(30)]).group_by_key().run())
    assert {k: sorted(v) for k, v in grouped.items()} == {k: list(range(k, 30, 3)) for k in range(3)}


def test_a_failing_function_fails_the_run_with_its_traceback(session: Session) -> None:
    def explode(x: int) -> int:
        if x == 7:
            raise ValueError("seven is not allowed")
        return x

    with pytest.raises(JobFailedError, match="seven is not allowed"):
        Flow(session).feed(range(20)).map(explode).frequencies().run()


def test_a_job_class_runs_from_python_and_its_output_reads_as_records(session: Session, corpus: Path,
                                                                      tmp_path: Path) -> None:
    wordcount = load("wordcount")
    output = session.run_job(wordcount.WordCount, [corpus / "a"], reducers=2)
    words = Counter(w for w in (m.lower() for m in wordcount.WORD.findall("\n".join(lines_of(corpus / "a")).lower())))
    assert dict(output) == dict(words)
    output.remove()
    packed = tmp_path / "packed.py"  # the same, its parts written compressed: read back as records all the same
    source = (EXAMPLES / "wordcount.py").read_text()
    header = "class WordCount(MRJob):\n"
    packed.write_text(source.replace(header, header + "    OUTPUT_COMPRESSION = 'xz'\n"))
    output = session.run_job(packed, [corpus / "a"], reducers=2, options={})
    assert {p.name for p in Path(output.directory).glob("part-*")} == {"part-00000.xz", "part-00001.xz"}
    assert dict(output) == dict(words)
    output.remove()


def test_the_wordcount_example_runs_as_a_script(corpus: Path) -> None:
    result = subprocess.run([sys.executable, str(EXAMPLES / "dataflow_wordcount.py"), str(corpus / "b")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    printed = {w: int(n) for w, n in (line.split("\t") for line in result.stdout.splitlines())}
    assert printed == words_of(corpus / "b")


def test_a_source_feeding_nothing_is_reported_and_bad_records_get_a_clear_error(session: Session) -> None:
    flow = Flow(session)
    used = flow.feed(["a b", "b"])
    flow.feed([1, 2], name="forgotten")
    with pytest.warns(UserWarning, match="source forgotten feeds none of the outputs"):
        assert sorted(used.flat_map(str.split).frequencies().run()) == [("a", 1), ("b", 2)]
    with pytest.raises(JobFailedError, match=r"join needs \(key, value\) records; got '(a b|b)'"), \
            pytest.warns(UserWarning, match="forgotten"):
        used.join(used.map(lambda s: (s, 1))).run()


def test_every_source_kind_and_the_remaining_operations(session: Session, tmp_path: Path) -> None:
    (tmp_path / "j").mkdir()
    rows = [{"user": f"u{i % 4}", "amount": i} for i in range(40)]
    (tmp_path / "j" / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "b.bin").write_bytes(b"\xff\xfeone\nzwei\r\n\x00three\n")
    (tmp_path / "w").mkdir()
    for i in range(3):
        (tmp_path / "w" / f"f{i}.dat").write_bytes(bytes(range(i * 10, i * 10 + 7)))
    flow = Flow(session)
    totals = flow.json_lines(str(tmp_path / "j")).map(lambda r: (r["user"], r["amount"])).reduce_by_key(operator.add)
    assert sorted(totals.run()) == [(f"u{k}", sum(i for i in range(40) if i % 4 == k)) for k in range(4)]
    assert flow.bytes_lines(str(tmp_path / "b.bin")).run() == [b"\xff\xfeone", b"zwei\r", b"\x00three"]
    sizes = flow.whole_files(str(tmp_path / "w")).map(lambda pf: (Path(pf[0]).name, len(pf[1]), pf[1][0]))
    assert sorted(sizes.run()) == [("f0.dat", 7, 0), ("f1.dat", 7, 10), ("f2.dat", 7, 20)]
    users = flow.json_lines(str(tmp_path / "j")).map(operator.itemgetter("user"))
    assert sorted(users.distinct().run()) == ["u0", "u1", "u2", "u3"]
    keyed = users.key_by(len).map_values(str.upper).count_by_key()
    assert keyed.run() == [(2, 40)]



def test_the_runs_of_one_session_share_task_processes_and_another_sessions_do_not(session: Session) -> None:
    """A later stage, and a later run of the same session (one program, as a loop of PageRank iterations),
    run in the task processes the earlier ones left idle: no process to start. Another program on the same
    cluster never gets them."""
    def pid_of(record: Any) -> tuple[Any, int]:
        return record, __import__("os").getpid()

    def run_pids(on: Session) -> tuple[set[int], set[int]]:
        first = (Flow(on).feed(range(40)).map(pid_of).map(lambda r: (r[0] % 4, r[1]))
                 .group_by_key().map(pid_of))  # stage 0: ((key, [map pids]), reduce pid)
        later = first.map(lambda r: (r[0][0] % 2, r)).group_by_key().map(pid_of)  # stage 1
        records = later.run()
        stage0 = {pid for (_, firsts), _ in records for ((_, map_pids), reduce_pid) in firsts
                  for pid in [*map_pids, reduce_pid]}
        return stage0, {pid for _, pid in records}

    stage0, stage1 = run_pids(session)
    assert stage1 <= stage0  # stage 1 ran in the processes stage 0 left idle
    again0, again1 = run_pids(session)
    assert again0 | again1 <= stage0  # the next run of the program too
    # another program on the same embedded cluster (not closed: the cluster is the fixture's)
    other_program = Session(session.seeds, session.secret, cluster=session._cluster, embedded_dir=session._dir,
                            partitions=session.partitions, split_size=session.split_size)
    other0, other1 = run_pids(other_program)
    assert not (other0 | other1) & (stage0 | stage1)  # another program: other processes
