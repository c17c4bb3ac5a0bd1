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
