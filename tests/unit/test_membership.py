"""Membership changes (pure): what may be staged, what a commit does, how phases end, how gossip merges."""

from __future__ import annotations

import dataclasses

import pytest

from dynamr.rpc import messages as m
from dynamr.store import membership as ms
from dynamr.store.membership import Change, MembershipError


def _three() -> ms.ClusterState:
    return ms.bootstrap([("n1", "10.0.0.1", 7400), ("n2", "10.0.0.2", 7400), ("n3", "10.0.0.3", 7400)],
                        coordinator="10.0.0.1:7500")


def test_a_join_is_registered_staged_committed_and_finished_after_both_phases() -> None:
    s = ms.register(_three(), "n1", "n4", "10.0.0.4", 7400)
    assert s.status("n4") == "joining" and s.owners == ("n1", "n2", "n3") and s.version == 2
    assert ms.register(s, "n1", "n4", "10.0.0.4", 7400) is s  # asked again: nothing new
    s = ms.stage(s, "n1", Change("join", "n4"), n=3)
    assert s.planned_owners() == ("n1", "n2", "n3", "n4") and s.owners == ("n1", "n2", "n3")
    s = ms.commit(s, "n1")
    assert (s.phase, s.pending, s.staged, s.since) == ("prepare", ("n1", "n2", "n3", "n4"), (), s.version)
    assert s.participants() == ["n1", "n2", "n3", "n4"]
    for node in ("n1", "n2", "n3"):
        s = ms.acknowledge(s, "n1", node, s.version, "prepare")
    assert s.phase == "prepare" and s.acks == ("n1", "n2", "n3")
    s = ms.acknowledge(s, "n1", "n4", s.version, "stream")  # the wrong phase: ignored
    assert s.phase == "prepare"
    s = ms.acknowledge(s, "n1", "n4", s.version, "prepare")
    assert (s.phase, s.acks) == ("stream", ())
    before = s.since
    for node in ("n1", "n2", "n3", "n4"):
        s = ms.acknowledge(s, "n1", node, before - 1, "stream")  # made before the phase began: stale
    assert s.phase == "stream" and s.acks == ()
    for node in ("n1", "n2", "n3", "n4"):
        s = ms.acknowledge(s, "n1", node, s.version, "stream")
    assert not s.moving and s.owners == ("n1", "n2", "n3", "n4") and s.status("n4") == "valid"


def test_a_leave_keeps_the_node_in_the_ring_until_the_transition_finishes_and_a_remove_does_not() -> None:
    s = ms.commit(ms.stage(_three(), "n1", Change("leave", "n3"), n=2), "n1")
    assert s.status("n3") == "leaving" and "n3" in s.owners and s.pending == ("n1", "n2")
    assert "n3" in s.participants()
    s = ms.finish(s, "n1")
    assert s.status("n3") == "left" and s.owners == ("n1", "n2") and s.addresses().keys() == {"n1", "n2"}
    r = ms.commit(ms.stage(_three(), "n1", Change("remove", "n2"), n=2), "n1")
    assert r.status("n2") == "left" and r.participants() == ["n1", "n3"]


@pytest.mark.parametrize(("change", "n", "message"), [
    (Change("join", "n2"), 3, "not joining"),
    (Change("leave", "n9"), 3, "not a member"),
    (Change("leave", "n1"), 3, "fewer than N=3"),
    (Change("shrink", "n1"), 3, "unknown change"),
])
def test_a_change_that_cannot_be_made_says_why(change: Change, n: int, message: str) -> None:
    with pytest.raises(MembershipError, match=message):
        ms.stage(_three(), "n1", change, n)


def test_one_change_per_node_and_one_transition_at_a_time() -> None:
    s = ms.stage(_three(), "n1", Change("leave", "n3"), n=2)
    with pytest.raises(MembershipError, match="already staged"):
        ms.stage(s, "n1", Change("remove", "n3"), n=2)
    with pytest.raises(MembershipError, match="nothing is staged"):
        ms.commit(ms.unstage(s, "n1"), "n1")
    moving = ms.commit(s, "n1")
    with pytest.raises(MembershipError, match="only removing a dead node"):
        ms.commit(ms.stage(moving, "n1", Change("leave", "n2"), n=1), "n1")
    with pytest.raises(MembershipError, match="is taken"):
        ms.register(moving, "n1", "n1", "10.0.0.9", 7400)
    with pytest.raises(MembershipError, match="already member n2"):
        ms.register(moving, "n1", "n5", "10.0.0.2", 7400)


def test_gossip_keeps_the_newer_state_everywhere_and_the_claimant_is_the_first_valid_node_up() -> None:
    a = ms.register(_three(), "n1", "n4", "10.0.0.4", 7400)
    b = ms.register(_three(), "n2", "n5", "10.0.0.5", 7400)  # same version, made by another node
    assert ms.merge(a, b) is b and ms.merge(b, a) is b  # the author breaks the tie the same way everywhere
    assert ms.merge(ms.unstage(a, "n1"), a) is a
    s = _three()
    assert s.claimant({"n1", "n2", "n3"}) == "n1" and s.claimant({"n2", "n3"}) == "n2"
    assert s.claimant(set()) is None


def test_the_wire_form_round_trips_and_a_state_that_makes_no_sense_is_refused() -> None:
    s = ms.commit(ms.stage(ms.register(_three(), "n1", "n4", "10.0.0.4", 7400), "n1", Change("join", "n4"), 3),
                  "n1")
    assert ms.from_record(ms.to_record(s)) == s
    rec = ms.to_record(s)
    bad = [
        dataclasses.replace(rec, owners=("n9",)),
        dataclasses.replace(rec, phase="dance"),
        dataclasses.replace(rec, members=(*rec.members, rec.members[0])),
        dataclasses.replace(rec, members=(dataclasses.replace(rec.members[0], status="asleep"),)),
        dataclasses.replace(rec, staged=(m.ChangeRecord(action="explode", node_id="n1"),)),
    ]
    for record in bad:
        with pytest.raises(MembershipError):
            ms.from_record(record)


def test_a_participant_that_died_is_removed_mid_transition_and_the_transition_starts_again_without_it() -> None:
    s = ms.register(ms.register(_three(), "n1", "n4", "10.0.0.4", 7400), "n1", "n5", "10.0.0.5", 7400)
    s = ms.stage(ms.stage(s, "n1", Change("join", "n4"), 3), "n1", Change("join", "n5"), 3)
    s = ms.commit(s, "n1")
    for node in s.participants():
        s = ms.acknowledge(s, "n1", node, s.version, "prepare")
    s = ms.acknowledge(s, "n1", "n1", s.version, "stream")
    assert s.phase == "stream" and s.pending == ("n1", "n2", "n3", "n4", "n5")
    s = ms.stage(s, "n1", Change("remove", "n5"), 3)  # n5 died while streaming: nothing would ever end
    assert s.planned_owners() == ("n1", "n2", "n3", "n4")
    restarted = ms.commit(s, "n1")
    assert (restarted.phase, restarted.acks, restarted.since) == ("prepare", (), restarted.version)
    assert restarted.pending == ("n1", "n2", "n3", "n4") and restarted.owners == ("n1", "n2", "n3")
    assert restarted.status("n5") == "left" and "n5" not in restarted.participants()
    for phase in ("prepare", "stream"):
        for node in restarted.participants():
            restarted = ms.acknowledge(restarted, "n1", node, restarted.version, phase)
    assert not restarted.moving and restarted.owners == ("n1", "n2", "n3", "n4")
    assert restarted.status("n4") == "valid"
