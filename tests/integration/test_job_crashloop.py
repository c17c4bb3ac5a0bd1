"""The MIT 6.5840-style crash test (see tests/integration/crashloop.py); bench/crash_bench.py runs it 20 times."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import wait_until
from tests.integration.conftest import MakeCluster
from tests.integration.crashloop import crash_run


def test_nodes_killed_from_inside_map_and_reduce_calls_still_give_the_right_output(
        make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(3, n=3, r=2, w=2, task_slots=2, worker_timeout=2.0, speculative_after=2.0)
    result = crash_run(cluster, tmp_path)
    assert result["error"] is None, f"the restart loop failed: {result['error']!r}"
    assert result["restarts"] >= 1, "no node crashed: the test tested nothing"
    assert result["status"].state == "succeeded", result["status"].error
    assert result["output_ok"]
    left: dict[str, tuple[bytes, ...]] = {}

    def clean() -> bool:
        left.clear()
        left.update({node: keys for node, keys in result["keys"]().items() if keys})
        return not left

    try:
        wait_until(clean, 60, "no intermediate key of the job on any node")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still there: {left}") from None
