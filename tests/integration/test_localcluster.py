"""Throwaway clusters never outlive the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_until

OWNER = """
import sys, time
from pathlib import Path
from dynamr.localcluster import LocalCluster
c = LocalCluster.create(Path(sys.argv[1]), 2, ephemeral=True)
c.start()
print(",".join(str(c.pid(n.node_id)) for n in c.spec.nodes), flush=True)
time.sleep(120)
"""


STARTER = """
import sys, time
from pathlib import Path
from dynamr.localcluster import LocalCluster
c = LocalCluster.create(Path(sys.argv[1]), 2, ephemeral=True)
print(",".join(str(c.start_node(n)) for n in c.process_ids()), flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[1].split()[0] == "Z")


def test_ephemeral_nodes_exit_when_their_owner_is_killed(tmp_path: Path) -> None:
    _kill_owner_then_expect_nodes_gone(OWNER, tmp_path)


def test_ephemeral_nodes_exit_when_their_owner_is_killed_before_they_are_up(tmp_path: Path) -> None:
    """The owner dies while its nodes are still starting: they must not mistake their new parent for it."""
    _kill_owner_then_expect_nodes_gone(STARTER, tmp_path)


def _kill_owner_then_expect_nodes_gone(script: str, tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "c")], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        pids = [int(p) for p in owner.stdout.readline().strip().split(",")]
        assert all(_alive(p) for p in pids)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        wait_until(lambda: not any(_alive(p) for p in pids), 15, "node processes to exit after their owner")
    finally:
        if owner.poll() is None:
            owner.kill()
        for p in pids if "pids" in locals() else []:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
