from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dynamr.store import versions
from dynamr.store.engine import Engine, LmdbEngine, MemoryEngine, WriteTxn
from dynamr.store.replica import Replica


@pytest.fixture(params=["memory", "lmdb"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    eng: Engine = MemoryEngine() if request.param == "memory" else LmdbEngine(
        tmp_path / "db", map_size=1 << 26, fsync="never")
    yield eng
    eng.close()


def test_apply_scan_and_count(engine: Engine) -> None:
    def put_all(txn: WriteTxn) -> int:
        for k in (b"b", b"ab", b"aa", b"c"):
            txn.put("data", k, k * 2)
        return 4

    assert engine.apply([put_all]) == [4]
    assert engine.get("data", b"ab") == b"abab"
    assert list(engine.scan("data", b"a")) == [(b"aa", b"aaaa"), (b"ab", b"abab")]
    assert engine.count("data") == 4 and engine.count("hints") == 0


def test_one_failing_operation_does_not_fail_the_batch(engine: Engine) -> None:
    def bad(txn: WriteTxn) -> None:
        raise ValueError("boom")

    results = engine.apply([lambda t: t.put("data", b"k", b"v"), bad])
    assert results[0] is None and isinstance(results[1], ValueError)
    assert engine.get("data", b"k") == b"v"


def test_epoch_survives_clean_restart_and_changes_when_wiped(tmp_path: Path) -> None:
    eng = LmdbEngine(tmp_path / "a", map_size=1 << 26)
    first = Replica(eng, "n1")
    first.mark_clean_stop()
    eng.close()
    eng = LmdbEngine(tmp_path / "a", map_size=1 << 26)
    assert Replica(eng, "n1").epoch == first.epoch
    eng.close()
    wiped = LmdbEngine(tmp_path / "b", map_size=1 << 26)
    assert Replica(wiped, "n1").epoch != first.epoch
    wiped.close()


def test_unclean_stop_renews_epoch_only_without_synced_commits(tmp_path: Path) -> None:
    eng = LmdbEngine(tmp_path / "a", map_size=1 << 26, fsync="periodic")
    epoch = Replica(eng, "n1", durable_commits=False).epoch
    eng.close()  # no mark_clean_stop: as after a crash
    eng = LmdbEngine(tmp_path / "a", map_size=1 << 26, fsync="periodic")
    assert Replica(eng, "n1", durable_commits=False).epoch != epoch
    eng.close()
    eng = LmdbEngine(tmp_path / "c", map_size=1 << 26)
    epoch = Replica(eng, "n1").epoch
    eng.close()
    eng = LmdbEngine(tmp_path / "c", map_size=1 << 26)
    assert Replica(eng, "n1").epoch == epoch
    eng.close()


def test_replica_merges_hints_into_reads_and_drops_delivered_hints(engine: Engine) -> None:
    rep = Replica(engine, "n4")
    state, _ = versions.write((), {}, "n1@x", b"v")
    engine.apply([rep.op_merge(b"key", state, hint_for="n2")])
    assert versions.live_values(rep.read(b"key")) == (b"v",)
    assert [(k, o) for k, o, _ in rep.hints()] == [(b"key", "n2")]
    newer, _ = versions.write(state, {}, "n1@x", b"w")
    engine.apply([rep.op_merge(b"key", newer, hint_for="n2")])
    assert engine.apply([rep.op_drop_hint(b"key", "n2", state)]) == [False]  # newer write arrived meanwhile
    assert engine.apply([rep.op_drop_hint(b"key", "n2", newer)]) == [True]
    assert list(rep.hints()) == []


def test_tombstone_index_follows_state(engine: Engine) -> None:
    rep = Replica(engine, "n1")
    engine.apply([rep.op_coordinate(b"k", {}, b"v")])
    ctx = versions.context_of(rep.read(b"k"))
    engine.apply([rep.op_coordinate(b"k", ctx, None)])
    assert rep.tombstone_keys() == [b"k"]
    assert engine.apply([rep.op_purge(b"k", ())]) == [False]
    assert engine.apply([rep.op_purge(b"k", rep.read(b"k"))]) == [True]
    assert rep.read(b"k") == () and rep.tombstone_keys() == []


def test_longest_key_fits_lmdb_even_as_a_hint(tmp_path: Path) -> None:
    from dynamr.config import MAX_KEY_LIMIT, MAX_NODE_ID, StoreSettings
    from dynamr.errors import ConfigError

    eng = LmdbEngine(tmp_path / "db", map_size=1 << 26)
    rep = Replica(eng, "n1")
    key = b"k" * MAX_KEY_LIMIT
    state, _ = versions.write((), {}, "a@1", b"v")
    results = eng.apply([rep.op_merge(key, state), rep.op_merge(key, state, hint_for="o" * MAX_NODE_ID)])
    assert not any(isinstance(r, Exception) for r in results), results
    assert versions.live_values(rep.read(key)) == (b"v",)
    eng.close()
    with pytest.raises(ConfigError, match="max_key_bytes"):
        StoreSettings(max_key_bytes=MAX_KEY_LIMIT + 1)


def test_full_store_gives_a_clear_error_and_keeps_what_was_committed(tmp_path: Path) -> None:
    from dynamr.errors import StorageError

    eng = LmdbEngine(tmp_path / "db", map_size=1 << 20, fsync="never")
    eng.apply([lambda t: t.put("data", b"kept", b"v")])
    with pytest.raises(StorageError, match="map_size"):
        eng.apply([lambda t: t.put("data", b"big", b"x" * (2 << 20))])
    assert eng.get("data", b"kept") == b"v"
    eng.close()
