from __future__ import annotations

import pytest

from dynamr.config import ClusterSpec, NodeAddress, Quorum, StoreSettings, load_secret
from dynamr.errors import ConfigError


@pytest.mark.parametrize("n,r,w", [(0, 1, 1), (3, 0, 2), (3, 4, 2), (3, 2, 4)])
def test_invalid_quorums_are_refused(n: int, r: int, w: int) -> None:
    with pytest.raises(ConfigError):
        Quorum(n=n, r=r, w=w)


def test_weak_quorum_warns(caplog: pytest.LogCaptureFixture) -> None:
    StoreSettings(quorum=Quorum(n=4, r=1, w=1))
    assert "R + W <= N" in caplog.text


def test_timeouts_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="failure_timeout"):
        StoreSettings(heartbeat_interval=2.0, failure_timeout=1.0)
    with pytest.raises(ConfigError, match="replica_timeout"):
        StoreSettings(replica_timeout=10.0, request_timeout=5.0)


def test_n_larger_than_cluster_is_refused() -> None:
    with pytest.raises(ConfigError, match="need at least 3 nodes"):
        ClusterSpec(nodes=(NodeAddress(node_id="a", host="127.0.0.1", port=1),))


def test_cluster_file_round_trips_and_rejects_unknown_settings() -> None:
    nodes = tuple(NodeAddress(node_id=f"n{i}", host="127.0.0.1", port=1000 + i) for i in range(3))
    spec = ClusterSpec(nodes=nodes, settings=StoreSettings(vnodes=8, fsync="never"))
    assert ClusterSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ConfigError, match="unknown setting"):
        StoreSettings.from_dict({"bogus": 1})
    with pytest.raises(ConfigError, match="malformed"):
        ClusterSpec.from_json("{not json")


def test_secret_sources(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DYNAMR_SECRET", raising=False)
    with pytest.raises(ConfigError, match="no cluster secret"):
        load_secret()
    f = tmp_path / "s"
    f.write_bytes(b"abc\n")
    assert load_secret(secret_file=f) == b"abc"
    monkeypatch.setenv("DYNAMR_SECRET", "env")
    assert load_secret() == b"env"
    assert load_secret("given") == b"given"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("task_timeout", 0, "task_timeout must be positive"),
    ("speculative_after", -1.0, "speculative_after must be positive"),
    ("speculative_share", 1.5, "speculative_share must be between 0 and 1"),
    ("speculative_slow_factor", 1.0, "speculative_slow_factor above 1"),
    ("node_exclusion_failures", 0, "node_exclusion_failures and job_statuses_kept must be at least 1"),
    ("job_statuses_kept", 0, "node_exclusion_failures and job_statuses_kept must be at least 1"),
    ("task_process_reuse", 0, "task_process_reuse must be at least 1"),
    ("task_process_max_rss", 1 << 20, "task_process_max_rss at least 16 MiB"),
])
def test_task_settings_are_validated(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        StoreSettings(**{field: value})  # type: ignore[arg-type]
