from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dynamr.store import versions
from dynamr.store.versions import Sibling, State


def test_blind_writes_through_one_coordinator_become_siblings() -> None:
    state, _ = versions.write((), {}, "a@1", b"x")
    state, _ = versions.write(state, {}, "a@1", b"y")
    assert sorted(versions.live_values(state)) == [b"x", b"y"]


def test_write_with_read_context_replaces_what_was_read() -> None:
    state, _ = versions.write((), {}, "a@1", b"x")
    state, _ = versions.write(state, {}, "b@1", b"y")
    ctx = versions.context_of(state)
    state, _ = versions.write(state, ctx, "a@1", b"z")
    assert versions.live_values(state) == (b"z",)


def test_write_with_stale_context_keeps_the_newer_sibling() -> None:
    s1, _ = versions.write((), {}, "a@1", b"v1")
    ctx1 = versions.context_of(s1)
    s2, _ = versions.write(s1, ctx1, "a@1", b"v2")  # someone updated v1 -> v2
    s3, _ = versions.write(s2, ctx1, "a@1", b"v3")  # someone else also updated v1 -> v3
    assert sorted(versions.live_values(s3)) == [b"v2", b"v3"]


def test_delete_is_a_tombstone_that_hides_the_value() -> None:
    s1, _ = versions.write((), {}, "a@1", b"v")
    s2, _ = versions.write(s1, versions.context_of(s1), "a@1", None)
    assert versions.live_values(s2) == ()
    assert versions.tombstone_only(s2)


def test_new_epoch_never_collides_with_old_dots() -> None:
    # A wiped node gets a new epoch, hence a new actor: its first write cannot shadow an old one.
    old, _ = versions.write((), {}, "a@old", b"acknowledged")
    fresh, _ = versions.write((), {}, "a@new", b"after wipe")
    merged = versions.merge(old, fresh)
    assert sorted(versions.live_values(merged)) == [b"acknowledged", b"after wipe"]


def test_encoding_round_trips() -> None:
    s, _ = versions.write((), {"b@1": 3}, "a@1", b"\x00\xff")
    s, _ = versions.write(s, {}, "c@2", None)
    assert versions.decode_state(versions.encode_state(s)) == s
    ctx = versions.context_of(s)
    assert versions.decode_context(versions.encode_context(ctx)) == ctx


# --- properties of merge over states produced by random histories -----------------------------------

ACTORS = ["a@1", "b@1", "c@1"]


@st.composite
def histories(draw: st.DrawFn) -> list[State]:
    """Replica states reached by random writes (with or without the context of some replica)."""
    replicas: list[State] = [(), (), ()]
    for _ in range(draw(st.integers(1, 12))):
        op = draw(st.sampled_from(["write", "sync"]))
        i = draw(st.integers(0, 2))
        if op == "write":
            use_ctx = draw(st.booleans())
            ctx = versions.context_of(replicas[i]) if use_ctx else {}
            value = draw(st.one_of(st.none(), st.binary(max_size=3)))
            replicas[i], _ = versions.write(replicas[i], ctx, ACTORS[i], value)
        else:
            j = draw(st.integers(0, 2))
            replicas[i] = versions.merge(replicas[i], replicas[j])
    return replicas


@settings(max_examples=300)
@given(histories())
def test_merge_is_commutative_associative_idempotent(states: list[State]) -> None:
    a, b, c = states
    assert versions.merge(a, b) == versions.merge(b, a)
    assert versions.merge(versions.merge(a, b), c) == versions.merge(a, versions.merge(b, c))
    assert versions.merge(a, a) == versions.merge(a)


@settings(max_examples=300)
@given(histories())
def test_merge_never_loses_a_write_no_context_covered(states: list[State]) -> None:
    merged = versions.merge(*states)
    for state in states:
        for sib in state:
            if sib not in merged:
                # a sibling may only disappear if some surviving sibling's past covers it
                assert any(versions.covered(o.past, sib.actor, sib.counter) for o in merged), sib


def test_sibling_dot_property() -> None:
    s = Sibling("a@1", 4, {}, b"x")
    assert s.dot == ("a@1", 4) and not s.is_tombstone


vectors = st.dictionaries(st.sampled_from(ACTORS), st.integers(0, 4), max_size=3)


def _le(a: dict[str, int], b: dict[str, int]) -> bool:
    return versions.compare(a, b) in (versions.Order.BEFORE, versions.Order.EQUAL)


@settings(max_examples=300)
@given(vectors, vectors, vectors)
def test_version_vectors_form_a_partial_order_with_join_as_least_upper_bound(
        a: dict[str, int], b: dict[str, int], c: dict[str, int]) -> None:
    assert _le(a, a)
    if _le(a, b) and _le(b, a):
        assert versions.compare(a, b) is versions.Order.EQUAL
    if _le(a, b) and _le(b, c):
        assert _le(a, c)
    j = versions.join(a, b)
    assert _le(a, j) and _le(b, j)
    if _le(a, c) and _le(b, c):
        assert _le(j, c)
    flipped = {versions.Order.BEFORE: versions.Order.AFTER, versions.Order.AFTER: versions.Order.BEFORE}
    order = versions.compare(a, b)
    assert versions.compare(b, a) is flipped.get(order, order)


def test_compare_examples() -> None:
    assert versions.compare({"a": 1}, {"a": 2}) is versions.Order.BEFORE
    assert versions.compare({"a": 2, "b": 1}, {"a": 2}) is versions.Order.AFTER
    assert versions.compare({"a": 1}, {"b": 1}) is versions.Order.CONCURRENT
    assert versions.compare({}, {"a": 0}) is versions.Order.EQUAL


def test_contexts_drop_dead_epochs_that_made_none_of_the_versions_and_merge_the_same_after() -> None:
    old, _ = versions.write((), {}, "n2@old", b"v1")  # n2 wrote under an epoch that a wipe ended
    newer, _ = versions.write(old, versions.context_of(old), "n1@a", b"v2")
    assert versions.live_values(newer) == (b"v2",) and newer[0].past == {"n2@old": 1}
    epochs = {"n1": "a", "n2": "new"}
    assert versions.dead_actors(newer, epochs) == {"n2@old"}
    assert versions.dead_actors(newer, {"n1": "a"}) == frozenset()  # n2's epoch not known yet: keep
    assert versions.dead_actors(old, epochs) == frozenset()  # the version itself is n2@old's
    pruned = versions.prune(newer, frozenset({"n2@old"}))
    assert pruned is not None and pruned[0].past == {} and versions.dots(pruned) == versions.dots(newer)
    assert versions.prune(old, frozenset({"n2@old"})) is None  # its dot must stay covered
    # merged with anything that holds no n2@old version, the pruned state behaves as before
    later, _ = versions.write(newer, versions.context_of(newer), "n3@c", b"v3")
    assert versions.merge(pruned, later) == versions.merge(newer, later)
    sibling, _ = versions.write((), {}, "n3@c", b"w")
    assert versions.dots(versions.merge(pruned, sibling)) == versions.dots(versions.merge(newer, sibling))
