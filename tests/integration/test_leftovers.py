"""Nothing a job run puts in the store or on disk stays behind once it is not needed."""

from __future__ import annotations

from pathlib import Path

from dynamr.client import Client
from tests.helpers import dynamr
from tests.integration.conftest import MakeCluster
from tests.integration.jobtools import submit, upload, wait_for_job
from tests.mrdata import write_corpus

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: word count whose reducer fails on one word, after other reducers wrote their part files
FAILS_ON_ONE_WORD = '''
from dynamr.mapreduce import MRJob

class FailsOnOne(MRJob):
    def mapper(self, _, line):
        for word in line.split():
            yield word, 1
    def reducer(self, word, ones):
        if word == "{word}":
            raise ValueError("cannot count " + word)
        yield word, sum(ones)
'''


def test_staged_inputs_and_outputs_go_and_job_delete_frees_the_name(make_cluster: MakeCluster,
                                                                   tmp_path: Path) -> None:
    cluster = make_cluster(1, n=1, r=1, w=1, task_slots=2)
    files = write_corpus(tmp_path / "in", [3000, 2000])
    root = ["--dir", str(cluster.root)]
    ran = dynamr("run", str(EXAMPLES / "wordcount.py"), str(files[0].parent), "-o", str(tmp_path / "out"),
                 "--local-cluster", "--name", "wc", *root, cwd=tmp_path)
    assert (tmp_path / "out" / "_SUCCESS").exists(), ran.stdout
    with Client(cluster.seeds, cluster.secret) as client:
        fs = client.files()
        assert not fs.exists("/_inputs/wc") and not fs.exists("/_outputs/wc"), "staging is removed"
        assert fs.exists("/_jobs/wc"), "the job's source stays while the job is known"
    again = dynamr("run", str(EXAMPLES / "wordcount.py"), str(files[0].parent), "-o", str(tmp_path / "out2"),
                   "--local-cluster", "--name", "wc", *root, cwd=tmp_path, check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    deleted = dynamr("job", "delete", "wc", *root, cwd=tmp_path)
    assert "deleted job wc" in deleted.stdout and "/_jobs/wc" in deleted.stdout
    with Client(cluster.seeds, cluster.secret) as client:
        assert not client.files().exists("/_jobs/wc")
    assert "wc" not in dynamr("jobs", *root, cwd=tmp_path).stdout
    dynamr("run", str(EXAMPLES / "wordcount.py"), str(files[0].parent), "-o", str(tmp_path / "out2"),
           "--local-cluster", "--name", "wc", *root, cwd=tmp_path)  # the name is free again
    missing = dynamr("job", "delete", "nosuch", *root, cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "no job named 'nosuch'" in missing.stderr


def test_deleting_a_running_job_is_refused(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(1, n=1, r=1, w=1, task_slots=1)
    files = write_corpus(tmp_path / "in", [2000])
    upload(cluster, files[0].parent)
    slow = tmp_path / "slow.py"
    slow.write_text("import time\nfrom dynamr.mapreduce import MRJob\nclass Slow(MRJob):\n"
                    "    def mapper(self, _, line):\n        time.sleep(30)\n        yield line, 1\n")
    submit(cluster, "slow", slow, ["/in"], "/slow-out", reducers=1)
    refused = dynamr("job", "delete", "slow", "--dir", str(cluster.root), cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "kill it first" in refused.stderr, refused.stderr
    dynamr("kill", "slow", "--dir", str(cluster.root), cwd=tmp_path, check=False)
    dynamr("job", "delete", "slow", "--dir", str(cluster.root), cwd=tmp_path)


def test_a_failed_job_leaves_no_partial_output_to_block_a_rerun(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(1, n=1, r=1, w=1, task_slots=2, max_attempts=1)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text(" ".join(f"w{i}" for i in range(200)) + "\n")
    upload(cluster, folder)
    failing = tmp_path / "failing.py"
    failing.write_text(FAILS_ON_ONE_WORD.format(word="w7"))
    submit(cluster, "partial", failing, ["/in"], "/out", reducers=4)
    assert wait_for_job(cluster, "partial", 120).state == "failed"
    with Client(cluster.seeds, cluster.secret) as client:
        assert not client.files().exists("/out"), "no part file of the failed job remains"
    fixed = tmp_path / "fixed.py"
    fixed.write_text(FAILS_ON_ONE_WORD.format(word="no such word"))
    submit(cluster, "rerun", fixed, ["/in"], "/out", reducers=4)
    assert wait_for_job(cluster, "rerun", 120).state == "succeeded"

    local = dynamr("run", str(failing), str(folder), "-o", str(tmp_path / "local-out"), "-r", "4",
                   cwd=tmp_path, check=False)
    assert local.returncode == 1
    assert not list((tmp_path / "local-out").glob("part-*")), "the embedded run left no part file either"
    dynamr("run", str(fixed), str(folder), "-o", str(tmp_path / "local-out"), "-r", "4", cwd=tmp_path)
