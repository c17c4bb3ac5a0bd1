from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamr.store.quorum import Outcome, ReadQuorum, Send, WriteQuorum

WALK = ("a", "b", "c", "d", "e")


def test_write_goes_to_preferred_nodes_when_all_up() -> None:
    q = WriteQuorum(WALK, 3, 2, set())
    assert q.start() == [Send("a"), Send("b"), Send("c")]
    q.on_ack("a")
    assert q.outcome is Outcome.PENDING
    q.on_ack("c")
    assert q.outcome is Outcome.SUCCEEDED


def test_down_preferred_node_is_replaced_by_a_hinted_fallback() -> None:
    q = WriteQuorum(WALK, 3, 2, {"b"})
    assert q.start() == [Send("a"), Send("d", hint_for="b"), Send("c")]


def test_failure_during_the_write_moves_to_the_next_fallback() -> None:
    q = WriteQuorum(WALK, 3, 3, set())
    q.start()
    assert q.on_failure("b") == [Send("d", hint_for="b")]
    assert q.on_failure("d") == [Send("e", hint_for="b")]
    q.on_ack("a"), q.on_ack("c"), q.on_ack("e")
    assert q.outcome is Outcome.SUCCEEDED
    assert not q.all_preferred_acked


def test_preferred_nodes_believed_down_are_tried_when_the_others_cannot_make_w() -> None:
    q = WriteQuorum(("a", "b"), 2, 2, {"b"})  # b was pinged before it listened; there is no fallback
    assert q.start() == [Send("a"), Send("b")]
    q.on_ack("a"), q.on_ack("b")
    assert q.outcome is Outcome.SUCCEEDED
    enough = WriteQuorum(("a", "b", "c"), 3, 2, {"c"})  # a and b make W: c is not bothered
    assert enough.start() == [Send("a"), Send("b")] and enough.unplaced == ["c"]


def test_write_fails_when_too_few_can_answer() -> None:
    q = WriteQuorum(("a", "b", "c"), 3, 2, set())
    q.start()
    assert q.on_failure("a") == []
    assert q.outcome is Outcome.PENDING
    q.on_failure("b")
    assert q.outcome is Outcome.FAILED


def test_duplicate_and_unknown_replies_are_ignored() -> None:
    q = WriteQuorum(WALK, 3, 2, set())
    q.start()
    q.on_ack("a"), q.on_ack("a"), q.on_ack("zzz")
    assert q.acked == ["a"] and q.outcome is Outcome.PENDING


@settings(max_examples=300)
@given(down=st.sets(st.sampled_from(WALK)), events=st.lists(st.tuples(st.booleans(), st.integers(0, 4))),
       w=st.integers(1, 3))
def test_write_quorum_invariants(down: set[str], events: list[tuple[bool, int]], w: int) -> None:
    q = WriteQuorum(WALK, 3, w, down)
    sent = {s.node for s in q.start()}
    owners = set()
    for ok, idx in events:
        node = WALK[idx]
        if ok:
            q.on_ack(node)
        else:
            for s in q.on_failure(node):
                assert s.node not in sent, "a node is never sent the same write twice"
                sent.add(s.node)
                owners.add(s.hint_for)
        # the outcome follows from the counts
        if len(q.acked) >= w:
            assert q.outcome is Outcome.SUCCEEDED
        elif len(q.acked) + len(q.outstanding) < w:
            assert q.outcome is Outcome.FAILED
    assert set(q.acked) <= sent
    assert owners <= set(WALK[:3])
    assert all(h == "" or h in WALK[:3] for h in q.outstanding.values())


def test_read_asks_first_healthy_nodes_and_moves_on_after_failure() -> None:
    q = ReadQuorum(WALK, 3, 2, {"a"})
    assert q.start() == ["b", "c", "d"]
    assert q.on_failure("b") == ["e"]
    q.on_reply("c")
    assert q.outcome is Outcome.PENDING
    q.on_reply("e")
    assert q.outcome is Outcome.SUCCEEDED


def test_read_fails_when_not_enough_replicas() -> None:
    q = ReadQuorum(("a", "b", "c"), 3, 2, set())
    q.start()
    q.on_failure("a"), q.on_failure("b")
    assert q.outcome is Outcome.FAILED
