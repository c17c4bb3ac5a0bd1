"""The rules of coordinators' claims on the store (dynamr.mapreduce.claims): who is a rival, for how long."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import msgpack
import pytest

from dynamr.errors import CoordinatorConflictError
from dynamr.mapreduce import intermediate as im
from dynamr.mapreduce.claims import (
    CLAIM_KEY,
    CLOCK_SLACK,
    FORGET_AFTER,
    LIVE_PERIODS,
    Claim,
    ClaimKeeper,
    claim_period,
    conflict_message,
    encode,
    merged,
    renewed,
    rivals,
)
from dynamr.store.client import AsyncClient, GetResult

NOW = 1_000_000.0
ME = Claim("me", "10.0.0.1:7000", NOW, 10.0, "hostA")


def test_a_claim_is_live_for_three_periods_and_the_clock_slack() -> None:
    other = Claim("other", "10.0.0.2:7000", NOW, 10.0)
    edge = NOW + LIVE_PERIODS * 10.0 + CLOCK_SLACK
    assert other.live(edge) and not other.live(edge + 0.01)
    assert rivals({"other": other}, "me", ME.place, edge) == [other]
    assert rivals({"other": other}, "me", ME.place, edge + 0.01) == []
    assert other.expires_in(NOW) == pytest.approx(LIVE_PERIODS * 10.0 + CLOCK_SLACK)


def test_neither_my_own_id_nor_my_place_is_a_rival() -> None:
    restarted = Claim("earlier-me", ME.address, NOW, 10.0, ME.host)  # no data directory: a new id, same place
    assert rivals({"me": ME, "earlier-me": restarted}, "me", ME.place, NOW) == []
    assert renewed({"earlier-me": restarted}, ME) == {"me": ME}


def test_the_same_address_on_another_host_is_a_rival() -> None:
    # a copied cluster file whose coordinator host name resolves on both machines, a moved virtual IP, containers
    twin = Claim("twin", ME.address, NOW, 10.0, "hostB")
    assert rivals({"me": ME, "twin": twin}, "me", ME.place, NOW) == [twin]
    assert renewed({"twin": twin}, ME) == {"twin": twin, "me": ME}
    assert "at 10.0.0.1:7000 on host hostB" in conflict_message([twin], NOW)


def test_a_claim_that_does_not_name_its_host_still_counts() -> None:
    (claim,) = merged([msgpack.packb({"old": ["10.0.0.2:7000", NOW, 10.0]})]).values()
    assert claim == Claim("old", "10.0.0.2:7000", NOW, 10.0, "")
    assert rivals({"old": claim}, "me", ME.place, NOW) == [claim]


def test_siblings_merge_to_the_newest_claim_per_coordinator() -> None:
    old = Claim("other", "10.0.0.2:7000", NOW - 100, 10.0)
    new = Claim("other", "10.0.0.2:7000", NOW, 10.0)
    claims = merged([encode({"other": old, "me": ME}), encode({"other": new})])
    assert claims == {"other": new, "me": ME}
    assert merged([encode({"other": new}), encode({"other": old})]) == {"other": new}


@pytest.mark.parametrize("value", [
    b"\xc1not msgpack", msgpack.packb([1, 2]), msgpack.packb({"x": "y"}), msgpack.packb({"x": ["a", 1.0]}),
    msgpack.packb({"x": [1, 1.0, 1.0]}), msgpack.packb({"x": ["a", "now", 1.0]}),
    msgpack.packb({"x": ["a", 1.0, True]}), msgpack.packb({"x": ["a", 1.0, 0]}), msgpack.packb({1: ["a", 1.0, 1.0]}),
    msgpack.packb({"x": ["a", 1.0, 1.0, 5]}), msgpack.packb({"x": ["a", 1.0, 1.0, "h", "extra"]}),
])
def test_what_is_not_a_well_formed_claim_is_ignored(value: bytes) -> None:
    assert merged([value, encode({"me": ME})]) == {"me": ME}


def test_renewing_writes_mine_and_forgets_claims_not_renewed_for_a_day() -> None:
    stale = Claim("gone", "10.0.0.3:7000", NOW - FORGET_AFTER - 1, 10.0)
    dead = Claim("dead", "10.0.0.4:7000", NOW - 3600, 10.0)  # not live, but kept a while (it says who was here)
    out = renewed({"gone": stale, "dead": dead, "me": Claim("me", ME.address, NOW - 10, 10.0)}, ME)
    assert out == {"dead": dead, "me": ME}
    assert merged([encode(out)]) == out


def test_the_conflict_message_names_the_rival_and_how_long_to_wait() -> None:
    rival = Claim("0123456789abcdef0123", "10.0.0.2:7000", NOW - 4, 10.0)
    message = conflict_message([rival], NOW)
    assert "0123456789ab at 10.0.0.2:7000" in message and "4 s ago" in message
    assert f"lapses in {LIVE_PERIODS * 10 + CLOCK_SLACK - 4:.0f} s" in message and "\n" not in message


def test_renewals_come_at_least_three_times_per_janitor_round() -> None:
    assert claim_period(0) == 10.0  # janitor off: claims still renewed (another's janitor must see this one)
    assert claim_period(300) == 10.0
    assert claim_period(0.3) == pytest.approx(0.1)


def test_the_claim_key_is_not_taken_for_a_commit_record_or_an_object() -> None:
    assert im.commit_owner(CLAIM_KEY) is None and im.object_owner(CLAIM_KEY) is None


class Register:
    """One key of a store for :class:`ClaimKeeper`: a write without the latest context leaves a sibling."""

    def __init__(self) -> None:
        self.values: list[bytes] = []
        self.version = 0

    async def get(self, key: bytes) -> GetResult:
        assert key == CLAIM_KEY
        return GetResult(tuple(self.values), str(self.version).encode())

    async def put(self, key: bytes, value: bytes, *, context: bytes = b"") -> bytes:
        assert key == CLAIM_KEY
        self.values = [value] if context == str(self.version).encode() else [*self.values, value]
        self.version += 1
        return b""


def _keeper(store: Register, coordinator: str, address: str) -> ClaimKeeper:
    return ClaimKeeper(cast(AsyncClient, store), coordinator, address, 10.0, host="h")


def test_a_starting_coordinator_claims_the_store_before_it_recovers_and_a_second_one_then_refuses() -> None:
    store = Register()
    asyncio.run(_keeper(store, "first", "10.0.0.1:7000").check())
    assert merged(store.values).keys() == {"first"}  # written at the check: a recovery may take long
    with pytest.raises(CoordinatorConflictError, match="another coordinator"):
        asyncio.run(_keeper(store, "second", "10.0.0.2:7000").check())
    assert merged(store.values).keys() == {"first"}  # the refused one wrote nothing


def test_two_coordinators_that_checked_at_once_see_each_other_at_their_first_renewal() -> None:
    store = Register()
    first, second = _keeper(store, "first", "10.0.0.1:7000"), _keeper(store, "second", "10.0.0.2:7000")
    stale = asyncio.run(store.get(CLAIM_KEY))

    async def write_from(read: GetResult, keeper: ClaimKeeper) -> Any:  # both read before either wrote
        return await store.put(CLAIM_KEY, encode(renewed(merged(read.values), Claim(
            keeper.coordinator, keeper.address, time.time(), keeper.every, keeper.host))), context=read.context)

    asyncio.run(write_from(stale, first))
    asyncio.run(write_from(stale, second))
    assert len(store.values) == 2  # siblings
    assert [c.coordinator for c in asyncio.run(first.renew())] == ["second"]
    assert [c.coordinator for c in asyncio.run(second.renew())] == ["first"]
    assert first.refusal() is not None and second.refusal() is not None
    assert len(store.values) == 1 and merged(store.values).keys() == {"first", "second"}
