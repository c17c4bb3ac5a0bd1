"""The dynamr command as a user runs it: a local cluster in a directory, kv commands, demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def dynamr(cwd: Path, *args: str, check: bool = True, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "dynamr", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"dynamr {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def workdir(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield tmp_path
    dynamr(tmp_path, "cluster", "down", check=False)


def test_cluster_up_status_kv_and_down(workdir: Path) -> None:
    out = dynamr(workdir, "cluster", "up", "--nodes", "3").stdout
    assert "cluster up" in out and "N=3 R=2 W=2" in out
    status = dynamr(workdir, "cluster", "status").stdout
    assert "3 of 3 nodes up" in status
    dynamr(workdir, "kv", "put", "greeting", "hello")
    assert dynamr(workdir, "kv", "get", "greeting").stdout.strip() == "hello"
    where = dynamr(workdir, "kv", "where", "greeting").stdout
    assert "3 of 3 replicas hold the key" in where and "replica 1 of 3" in where, where
    dynamr(workdir, "kv", "put", "greeting", "bonjour")  # replaces: a CLI put reads the context first
    assert dynamr(workdir, "kv", "get", "greeting").stdout.strip() == "bonjour"
    dynamr(workdir, "kv", "put", "greeting", "hola", "--concurrent")
    siblings = dynamr(workdir, "kv", "get", "greeting").stdout
    assert "2 siblings" in siblings and "bonjour" in siblings and "hola" in siblings
    stopped = dynamr(workdir, "cluster", "stop", "n2").stdout
    assert "stopped n2" in stopped and "dynamr cluster start n2" in stopped
    assert "2 of 3 nodes up" in dynamr(workdir, "cluster", "status", check=False).stdout
    assert dynamr(workdir, "kv", "get", "greeting").stdout.count("hola") == 1  # the others keep serving
    assert "started n2" in dynamr(workdir, "cluster", "start", "n2").stdout
    assert "3 of 3 nodes up" in dynamr(workdir, "cluster", "status").stdout
    unknown = dynamr(workdir, "cluster", "stop", "n9", check=False)
    assert unknown.returncode != 0 and "has no node 'n9'" in unknown.stdout + unknown.stderr
    dynamr(workdir, "kv", "delete", "greeting")
    missing = dynamr(workdir, "kv", "get", "greeting", check=False)
    assert missing.returncode == 1 and "not found" in missing.stdout
    down = dynamr(workdir, "cluster", "down").stdout
    assert "stopped 3 node(s)" in down
    after = dynamr(workdir, "cluster", "status", check=False)
    assert after.returncode == 1


def test_remote_cluster_needs_the_right_secret(workdir: Path) -> None:
    dynamr(workdir, "cluster", "up", "--nodes", "1")
    port = __import__("json").loads((workdir / ".dynamr" / "cluster.json").read_text())["nodes"][0]["port"]
    secret = (workdir / ".dynamr" / "secret").read_text()
    other = workdir / "elsewhere"
    other.mkdir()
    ok = dynamr(other, "kv", "put", "k", "v", "--cluster", f"127.0.0.1:{port}", env={"DYNAMR_SECRET": secret})
    assert "stored k" in ok.stdout
    bad = dynamr(other, "kv", "get", "k", "--cluster", f"127.0.0.1:{port}", "--secret", "nope", check=False)
    assert bad.returncode == 1 and "refused our cluster secret" in bad.stderr
    none = dynamr(other, "kv", "get", "k", check=False)
    assert none.returncode == 1 and "no local cluster" in none.stderr


def test_demo_round_trips_the_sample_data(tmp_path: Path) -> None:
    out = dynamr(tmp_path, "demo").stdout
    assert "ok:" in out and "all identical" in out


def piped(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The command as a script runs it: output piped, no COLUMNS set."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    result = subprocess.run([sys.executable, "-m", "dynamr", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=120, env=env)
    if check:
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result


def test_scripts_get_whole_names_unwrapped_and_json(workdir: Path) -> None:
    import json

    dynamr(workdir, "cluster", "up", "--nodes", "3")
    folder = workdir / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 50)
    name = "a-rather-long-job-name-that-a-terminal-of-eighty-columns-would-cut-" + "x" * 30
    examples = Path(__file__).resolve().parents[2] / "examples"
    ran = piped(workdir, "run", str(examples / "wordcount.py"), str(folder), "-o", str(workdir / "out"),
                "--local-cluster", "--name", name)
    assert name in ran.stdout + ran.stderr
    listing = piped(workdir, "jobs").stdout
    assert name in listing, listing  # one line, not cut or wrapped
    assert any(name in line and "succeeded" in line for line in listing.splitlines())
    jobs = json.loads(piped(workdir, "jobs", "--json").stdout)
    assert [(j["name"], j["state"]) for j in jobs] == [(name, "succeeded")]
    status = json.loads(piped(workdir, "status", name, "--json").stdout)
    assert status["name"] == name and status["state"] == "succeeded" and status["maps"] == status["maps_done"] >= 1
    cluster = json.loads(piped(workdir, "cluster", "status", "--json").stdout)
    assert [(n["node"], n["state"]) for n in cluster["nodes"]] == [("n1", "up"), ("n2", "up"), ("n3", "up")]
    assert cluster["up"] == 3 and cluster["n"] == 3
    assert all(n["status"]["keys"] >= 0 and n["report"]["record"]["node_id"] == n["node"] for n in cluster["nodes"])
    dynamr(workdir, "fs", "put", str(folder / "a.txt"), "/data/a.txt")
    files = json.loads(piped(workdir, "fs", "ls", "/data", "--json").stdout)
    assert files == [{"name": "a.txt", "kind": "file", "size": 2200, "mtime": files[0]["mtime"]}]
    # a hint that names a command is never split across lines when piped
    missing = piped(workdir, "status", "no-such-job-" + "y" * 90, check=False)
    assert missing.returncode == 1
    assert any("no-such-job-" + "y" * 90 in line and "dynamr jobs" in line for line in missing.stderr.splitlines())


SLOW_JOB = '''
import time
from dynamr.mapreduce import MRJob

class Slow(MRJob):
    def mapper(self, key, line):
        for word in line.split():
            yield word, 1
    def mapper_final(self):
        time.sleep(1.0)
        return ()
    def reducer(self, word, counts):
        yield word, sum(counts)
'''


def test_piped_progress_is_a_line_per_change_and_ctrl_c_leaves_the_job_running(workdir: Path) -> None:
    import signal
    import time

    dynamr(workdir, "cluster", "up", "--nodes", "2")
    folder = workdir / "in"
    folder.mkdir()
    for i in range(4):
        (folder / f"f{i}.txt").write_text("alpha beta gamma delta\n" * 400)
    job = workdir / "slow.py"
    job.write_text(SLOW_JOB)
    ran = piped(workdir, "run", str(job), str(folder), "-o", str(workdir / "out"), "--local-cluster", "--name",
                "progress", "--split-size", "4K", "-r", "2")
    lines = ran.stdout.splitlines()
    maps = [line for line in lines if line.startswith("progress: step 1/1 map: ")]
    reduces = [line for line in lines if line.startswith("progress: step 1/1 reduce: ")]
    assert maps and reduces, ran.stdout
    assert maps[-1].startswith("progress: step 1/1 map: 12/12 done, 0 running, 36.8 kB of 36.8 kB read; "), maps
    assert len(maps) < 40 and len(set(maps)) == len(maps)  # a line per change, no repeats
    assert reduces[-1].startswith("progress: step 1/1 reduce: 2/2 done, 0 running; "), reduces
    assert any(line.startswith("job progress succeeded") for line in lines), ran.stdout

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}

    def start(name: str, *extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "dynamr", "run", str(job), str(folder), "-o",
                                 str(workdir / name), "--local-cluster", "--name", name, "--split-size", "1K",
                                 *extra], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)

    def state(name: str) -> str:
        import json
        shown = piped(workdir, "status", name, "--json", check=False)
        return json.loads(shown.stdout)["state"] if shown.returncode == 0 else "unknown"

    def interrupt_when_running(proc: subprocess.Popen[str], name: str) -> str:
        deadline = time.monotonic() + 60
        while state(name) != "running":
            assert time.monotonic() < deadline and proc.poll() is None, "the job never ran"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        return err

    err = interrupt_when_running(start("keeps"), "keeps")
    assert "stopped following job keeps; it keeps running on the cluster" in err and "Traceback" not in err
    assert state("keeps") in ("running", "succeeded")
    err = interrupt_when_running(start("stops", "--kill-on-interrupt"), "stops")
    assert "job stops is being killed" in err
    deadline = time.monotonic() + 60
    while state("stops") != "killed":
        assert time.monotonic() < deadline, state("stops")
        time.sleep(0.1)
