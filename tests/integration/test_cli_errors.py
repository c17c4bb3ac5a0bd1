"""Every command, pointed at no cluster, at a cluster with the wrong secret, or with no secret at all,
says what is wrong in one line: no Python traceback, exit status 1."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.conftest import MakeCluster

#: every command that talks to a cluster, with arguments that pass option parsing
CLIENT_COMMANDS: list[list[str]] = [
    ["kv", "put", "k", "v"], ["kv", "get", "k"], ["kv", "delete", "k"], ["kv", "keys"],
    ["fs", "put", "{file}", "/f"], ["fs", "get", "/f", "{tmp}/got"], ["fs", "cat", "/f"], ["fs", "ls"],
    ["fs", "stat", "/f"], ["fs", "rm", "/f"], ["fs", "locate", "/f"], ["fs", "gc"],
    ["job", "create", "j", "{file}", "--input", "/in", "--output", "/out"], ["job", "run", "j"],
    ["status", "j"], ["jobs"], ["kill", "j"],
    ["run", "{file}", "/in", "-o", "store:/out"],
]
#: commands that use only the local cluster directory
LOCAL_ONLY: list[list[str]] = [["cluster", "status"]]  # ("cluster down" with no cluster is a no-op)
DAEMONS: list[list[str]] = [["node", "start", "--cluster-file", "{spec}", "--node-id", "n1", "--data-dir", "{tmp}/d"],
                            ["coordinator", "start", "--cluster-file", "{spec}"]]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dynamr", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env, stdin=subprocess.DEVNULL)


def _fill(args: list[str], **values: str) -> list[str]:
    return [a.format(**values) for a in args]


def _check_all(cases: list[list[str]], cwd: Path, env: dict[str, str], expected: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda a: (a, _run(a, cwd, env)), cases))
    bad = []
    for args, result in results:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        one_line = len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0]
        if result.returncode != 1 or not one_line or "Traceback" in result.stderr + result.stdout:
            bad.append(f"dynamr {' '.join(args)} -> exit {result.returncode}:\n{result.stderr}")
    assert not bad, "\n".join(bad)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DYNAMR_")}
    return {**clean, "COLUMNS": "200", "TMPDIR": str(tmp_path)}


def test_every_command_with_no_cluster_says_so_in_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "job.py").write_text("from dynamr.mapreduce import MRJob\nclass J(MRJob):\n    pass\n")
    values = {"file": str(tmp_path / "job.py"), "tmp": str(tmp_path)}
    cases = [_fill(c, **values) + (["--local-cluster"] if c[0] == "run" else []) for c in CLIENT_COMMANDS]
    _check_all(cases + LOCAL_ONLY, tmp_path, env, "no local cluster in")


def test_every_command_with_a_wrong_or_missing_secret_says_so_in_one_line(make_cluster: MakeCluster,
                                                                         tmp_path: Path,
                                                                         env: dict[str, str]) -> None:
    cluster = make_cluster(1)
    host, port = cluster.seeds[0]
    (tmp_path / "job.py").write_text("from dynamr.mapreduce import MRJob\nclass J(MRJob):\n    pass\n")
    values = {"file": str(tmp_path / "job.py"), "tmp": str(tmp_path), "spec": str(cluster.root / "cluster.json")}
    remote = [[*_fill(c, **values), "--cluster", f"{host}:{port}"] for c in CLIENT_COMMANDS]
    _check_all([[*c, "--secret", "not-the-secret"] for c in remote], tmp_path, env, "refused our cluster secret")
    _check_all(remote + [_fill(c, **values) for c in DAEMONS], tmp_path, env, "no cluster secret")
    assert not list(tmp_path.glob("dynamr-error-*")), "no unexpected error happened"


def test_a_malformed_cluster_file_is_a_one_line_error(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / ".dynamr").mkdir()
    (tmp_path / ".dynamr" / "cluster.json").write_text("{not json")
    _check_all([["kv", "get", "k"], ["cluster", "status"]], tmp_path, env, "cluster.json")


def test_a_parent_pid_without_exit_with_parent_is_a_one_line_error(tmp_path: Path, env: dict[str, str]) -> None:
    from dynamr.localcluster import LocalCluster

    cluster = LocalCluster.create(tmp_path / "c", 1)  # files only: nothing is started
    values = {"spec": str(cluster.cluster_file), "tmp": str(tmp_path)}
    cases = [[*_fill(c, **values), "--secret", "s", "--parent-pid", "12345"] for c in DAEMONS]
    _check_all(cases, tmp_path, env, "--parent-pid goes with --exit-with-parent")


def test_a_node_or_coordinator_started_on_a_data_directory_in_use_says_so_in_one_line(
        make_cluster: MakeCluster, tmp_path: Path, env: dict[str, str]) -> None:
    cluster = make_cluster(1)
    spec, secret = str(cluster.cluster_file), str(cluster.secret_file)
    cases = [["node", "start", "--cluster-file", spec, "--node-id", "n1", "--data-dir", str(cluster.data_dir("n1")),
              "--secret-file", secret],
             ["coordinator", "start", "--cluster-file", spec, "--data-dir", str(cluster.data_dir("coordinator")),
              "--secret-file", secret]]
    for args, holder in zip(cases, (cluster.pid("n1"), cluster.pid("coordinator")), strict=True):
        _check_all([args], tmp_path, env, f"is in use by another dynamr process (pid {holder})")
    # a data directory of its own, the same address: stopped by the address, before it recovers anything
    _check_all([[*cases[1][:4], "--data-dir", str(tmp_path / "other"), *cases[1][6:]]], tmp_path, env,
               "address already in use")
    assert sorted(cluster.running()) == ["coordinator", "n1"]  # both go on serving
