"""Compressed inputs through real task processes: gzip, bzip2 and xz files read as their text, one task each;
a file that is not what its name says fails the job with one line naming it; TeraSort samples a .gz input;
part files written compressed, and read back by the next job."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

from dynamr.client import Client
from tests.helpers import dynamr
from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import (
    SLOW_WORDCOUNT,
    attempts_per_task,
    submit,
    upload,
    wait_for_job,
    wordcount,
)
from tests.mrdata import read_json_parts, write_corpus, write_sort_records

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _compress(files: list[Path], folder: Path) -> list[Path]:
    """The files as .gz (two concatenated members), .bz2, .xz and one left plain, in ``folder``."""
    folder.mkdir()
    out = []
    for i, f in enumerate(files):
        data = f.read_bytes()
        kind = i % 4
        if kind == 0:
            target = folder / f"{f.name}.gz"
            target.write_bytes(gzip.compress(data[:len(data) // 2]) + gzip.compress(data[len(data) // 2:]))
        elif kind == 1:
            target = folder / f"{f.name}.bz2"
            target.write_bytes(bz2.compress(data))
        elif kind == 2:
            target = folder / f"{f.name}.XZ"  # (the ending in any case)
            target.write_bytes(lzma.compress(data))
        else:
            target = folder / f.name
            target.write_bytes(data)
        out.append(target)
    return out


def test_compressed_inputs_on_the_store_are_read_as_their_text_one_task_each(make_cluster: MakeCluster,
                                                                             tmp_path: Path) -> None:
    cluster = make_cluster(3)
    plain = write_corpus(tmp_path / "plain", [9000, 15000, 6000, 12000, 8000])
    _compress(plain, tmp_path / "in")
    upload(cluster, tmp_path / "in")
    job_file = tmp_path / "count.py"
    job_file.write_text(SLOW_WORDCOUNT.format(map_seconds=0, reduce_seconds=0))
    submit(cluster, "wc", job_file, ["/in"], "/out", split_size=2000, reducers=2, compress_output="bzip2")
    status = wait_for_job(cluster, "wc", 180)
    assert status.state == "succeeded", status.error
    with Client(cluster.seeds, cluster.secret, timeout=30) as client:
        fs = client.files()
        assert sorted(e.name for e in fs.ls("/out")) == ["_SUCCESS", "part-00000.bz2", "part-00001.bz2"]
        text = b"".join(bz2.decompress(fs.read_bytes(f"/out/part-0000{i}.bz2")) for i in range(2)).decode()
    got = {json.loads(key): int(value) for key, value in (line.split("\t") for line in text.splitlines())}
    assert got == wordcount(plain)
    # the plain file in 2,000-byte splits, each compressed file one split
    assert len(attempts_per_task(status, "m")) == -(-plain[3].stat().st_size // 2000) + 4


def test_a_file_that_is_not_what_its_name_says_fails_the_job_with_one_line(make_cluster: MakeCluster,
                                                                           tmp_path: Path) -> None:
    cluster = make_cluster(1, max_attempts=1)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "fine.txt.gz").write_bytes(gzip.compress(b"good words here\n"))
    (folder / "notes.txt.gz").write_bytes(b"plain text, not gzip\n")
    upload(cluster, folder)
    job_file = tmp_path / "count.py"
    job_file.write_text(SLOW_WORDCOUNT.format(map_seconds=0, reduce_seconds=0))
    submit(cluster, "wc", job_file, ["/in"], "/out")
    status = wait_for_job(cluster, "wc", 120)
    assert status.state == "failed"
    assert status.error is not None and status.error.input is not None
    assert status.error.input.path == "/in/notes.txt.gz"
    assert status.error.error.endswith("CompressedInputError: /in/notes.txt.gz: not valid gzip data (Not a gzipped "
                                       "file (b'pl')); a file named *.gz must be gzip-compressed"), status.error


def test_embedded_terasort_and_word_count_of_compressed_files(tmp_path: Path) -> None:
    records = tmp_path / "records.txt"
    write_sort_records(records, 3000)
    packed = tmp_path / "records.txt.gz"
    packed.write_bytes(gzip.compress(records.read_bytes()))
    dynamr("run", str(EXAMPLES / "terasort.py"), str(packed), "-o", str(tmp_path / "sorted"), cwd=tmp_path)
    lines = [line for p in sorted((tmp_path / "sorted").glob("part-*")) for line in p.read_text().splitlines()]
    assert [line[:10] for line in lines] == sorted(line[:10] for line in records.read_text().splitlines())
    plain = write_corpus(tmp_path / "plain", [5000, 7000, 3000, 4000])
    _compress(plain, tmp_path / "in")
    run = dynamr("run", str(EXAMPLES / "wordcount.py"), str(tmp_path / "in"), "-o", str(tmp_path / "wc"),
                 "--split-size", "1K", cwd=tmp_path)
    notes = [line for line in run.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "is compressed and is read whole by one task" in notes[0], run.stderr
    assert dict(read_json_parts(tmp_path / "wc")) == wordcount(plain)
    # written compressed, and read back as it is by the next job
    dynamr("run", str(EXAMPLES / "wordcount.py"), str(tmp_path / "in"), "-o", str(tmp_path / "packed"), "-r", "2",
           "--compress-output", "xz", cwd=tmp_path)
    parts = sorted(p.name for p in (tmp_path / "packed").iterdir())
    assert parts == ["_SUCCESS", "part-00000.xz", "part-00001.xz"]
    text = b"".join(lzma.decompress((tmp_path / "packed" / name).read_bytes()) for name in parts[1:]).decode()
    assert sorted(text.splitlines()) == sorted(
        line for p in (tmp_path / "wc").glob("part-*") for line in p.read_text().splitlines())
    again = tmp_path / "again.py"
    again.write_text("from dynamr.mapreduce import MRJob\n"
                     "class Lines(MRJob):\n"
                     "    def mapper(self, _, line):\n"
                     "        yield 'lines', 1\n"
                     "    def reducer(self, key, ones):\n"
                     "        yield key, sum(ones)\n")
    dynamr("run", str(again), str(tmp_path / "packed"), "-o", str(tmp_path / "count"), cwd=tmp_path)
    assert read_json_parts(tmp_path / "count") == [("lines", len(wordcount(plain)))]
