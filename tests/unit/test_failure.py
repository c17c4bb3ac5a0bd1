"""The phi-accrual failure detector (dynamr.store.failure), driven by a hand-held clock."""

from __future__ import annotations

import random

from dynamr.store.failure import FailureDetector


def beats(fd: FailureDetector, peer: str, times: list[float]) -> None:
    for t in times:
        fd.heard_from(peer, t, beat=True)


def down_after(fd: FailureDetector, peer: str, last: float, step: float = 0.01) -> float:
    """Seconds of silence after ``last`` until the detector declares ``peer`` down."""
    t = last
    while peer not in fd.tick(t):
        t += step
        assert t - last < 600, "never declared down"
    return t - last


def test_a_steady_peer_is_down_a_little_after_the_timeout_and_back_on_its_next_answer() -> None:
    fd = FailureDetector(["x", "y"], interval=0.5, pause=2.0, now=0.0)
    beats(fd, "x", [0.5 * i for i in range(1, 101)])
    beats(fd, "y", [0.5 * i for i in range(1, 101)])
    assert fd.tick(50.0 + 2.0) == []
    silent = down_after(fd, "x", 50.0)
    fd.heard_from("y", 50.0 + silent, beat=True)
    assert 2.5 < silent < 3.5
    assert "x" in fd and fd.is_up("y") and fd.down == {"x"}
    assert fd.heard_from("x", 60.0) is True and fd.is_up("x")
    assert fd.heard_from("x", 60.1) is False


def test_a_peer_whose_answers_came_irregularly_is_given_longer() -> None:
    rng = random.Random(7)
    steady = FailureDetector(["p"], interval=0.5, pause=2.0, now=0.0)
    jittery = FailureDetector(["p"], interval=0.5, pause=2.0, now=0.0)
    t = 0.0
    for _ in range(200):
        t += 0.5
        steady.heard_from("p", t, beat=True)
    u = 0.0
    for _ in range(200):
        u += rng.choice([0.1, 0.5, 1.5])  # a busy host: some pings answered late
        jittery.heard_from("p", u, beat=True)
    assert down_after(jittery, "p", u) > down_after(steady, "p", t) + 1.0


def test_suspicion_rises_with_silence_and_a_higher_threshold_waits_longer() -> None:
    fd = FailureDetector(["p"], interval=0.5, pause=1.0, now=0.0)
    beats(fd, "p", [0.5 * i for i in range(1, 41)])
    phis = [fd.phi("p", 20.0 + s) for s in (0.0, 1.0, 1.5, 2.0, 3.0)]
    assert phis == sorted(phis) and phis[0] < 1 and phis[-1] > 8
    patient = FailureDetector(["p"], interval=0.5, pause=1.0, now=0.0, threshold=16.0)
    beats(patient, "p", [0.5 * i for i in range(1, 41)])
    quick = FailureDetector(["p"], interval=0.5, pause=1.0, now=0.0, threshold=2.0)
    beats(quick, "p", [0.5 * i for i in range(1, 41)])
    assert down_after(quick, "p", 20.0) < down_after(fd, "p", 20.0) < down_after(patient, "p", 20.0)


def test_other_answers_prove_life_but_do_not_teach_the_rhythm() -> None:
    learnt = {}
    for as_beats in (False, True):
        fd = FailureDetector(["p"], interval=0.5, pause=2.0, now=0.0)
        beats(fd, "p", [0.5 * i for i in range(1, 21)])
        for i in range(1, 1001):  # a burst of replies 1 ms apart
            fd.heard_from("p", 10.0 + i / 1000, beat=as_beats)
        assert fd.phi("p", 11.0 + 2.0) < 1  # the burst counts as recent life
        learnt[as_beats] = down_after(fd, "p", 11.0)
    # had the burst's 1 ms gaps been learnt, a peer pinged every 0.5 s would be suspected half a second sooner
    assert learnt[False] > learnt[True] + 0.4


def test_a_refused_connection_takes_a_peer_down_at_once_and_the_outage_is_not_learnt() -> None:
    fd = FailureDetector(["p"], interval=0.5, pause=2.0, now=0.0)
    beats(fd, "p", [0.5 * i for i in range(1, 21)])
    assert fd.unreachable("p") is True and "p" in fd
    assert fd.unreachable("p") is False
    assert fd.heard_from("p", 100.0, beat=True) is True  # back after 90 s away
    fd.heard_from("p", 100.5, beat=True)
    assert 2.5 < down_after(fd, "p", 100.5) < 3.5  # the 90 s gap did not make it patient


def test_peers_come_and_go_with_membership() -> None:
    fd = FailureDetector(["a"], interval=0.5, pause=2.0, now=0.0)
    fd.unreachable("a")
    fd.set_peers(["b"], now=5.0)
    assert fd.down == frozenset() and fd.phi("a", 9.0) == 0.0
    assert fd.heard_from("a", 6.0) is False and fd.unreachable("a") is False
    assert fd.tick(7.0) == [] and fd.tick(9.0) == ["b"]
