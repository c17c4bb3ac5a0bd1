"""What a node and the coordinator expose at ``/metrics``, read from their state when scraped.

Requests by type and outcome, and their handling times, come from the RPC dispatcher of each
(:class:`dynamr.metrics.RequestStats`); a quorum failure is a request whose outcome is ``quorum`` or
``unavailable``. The rest is here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dynamr.mapreduce.jobrun import shuffle_bytes
from dynamr.metrics import counter, gauge

if TYPE_CHECKING:
    from dynamr.mapreduce.coordinator import Coordinator
    from dynamr.store.node import StoreNode


def node_source(node: StoreNode) -> Iterator[Metric]:
    engine = node.replica.engine
    labels = {"node": node.node_id}
    yield gauge("dynamr_keys", "Keys this node holds (its own replicas)", engine.count("data"), labels)
    yield gauge("dynamr_hints", "Hints this node holds for owners that were down", engine.count("hints"), labels)
    yield gauge("dynamr_tombstones", "Deletes not yet purged", engine.count("tombstones"), labels)
    yield gauge("dynamr_peers_down", "Peers this node's failure detector holds down", len(node.detector.down),
                labels)
    yield gauge("dynamr_disk_free_bytes", "Bytes free on the volume of this node's data", engine.disk_free(),
                labels)
    yield counter("dynamr_hints_delivered", "Hints handed back to their owners", node.hints_delivered, labels)
    ae = node.anti_entropy
    yield counter("dynamr_anti_entropy_exchanges", "Anti-entropy exchanges finished", ae.exchanges, labels)
    repaired = CounterMetricFamily("dynamr_anti_entropy_repaired", "Keys and chunks anti-entropy repaired",
                                   labels=["node", "kind"])
    repaired.add_metric([node.node_id, "keys"], ae.keys_repaired)
    repaired.add_metric([node.node_id, "chunks"], ae.chunks_repaired)
    yield repaired
    yield counter("dynamr_chunks_scrubbed", "Chunk copies re-hashed by the scrubber", ae.chunks_scrubbed, labels)
    yield counter("dynamr_chunks_corrupt", "Chunk copies the scrubber found corrupt", ae.chunks_corrupt, labels)
    sent = GaugeMetricFamily("dynamr_handoff_sent", "What this node sent to new owners in the current (or last) "
                             "change of membership", labels=["node", "kind"])
    for kind, value in (("keys", node.handoff.keys), ("chunks", node.handoff.chunks),
                        ("bytes", node.handoff.bytes)):
        sent.add_metric([node.node_id, kind], value)
    yield sent
    yield gauge("dynamr_handoff_running", "1 while this node sends its part of a change of membership",
                int(node.handoff.running), labels)


def coordinator_source(coordinator: Coordinator) -> Iterator[Metric]:
    jobs = GaugeMetricFamily("dynamr_jobs", "Jobs the coordinator knows, by state", labels=["state"])
    by_state: dict[str, int] = {}
    for summary in coordinator.summaries():
        by_state[summary.state] = by_state.get(summary.state, 0) + 1
    running = coordinator.unfinished()
    for state in ("created", "running", "finishing", "succeeded", "failed", "killed"):
        jobs.add_metric([state], by_state.get(state, 0))
    yield jobs
    attempts = CounterMetricFamily("dynamr_task_attempts", "Task attempts that ended, by kind and outcome "
                                   "(ok, failed, lost: its node died or it was stopped)", labels=["kind", "outcome"])
    for (kind, outcome), count in sorted(coordinator.attempt_outcomes.items()):
        attempts.add_metric([kind, outcome], count)
    yield attempts
    yield gauge("dynamr_attempts_running", "Task attempts running now", sum(s.running for s in running))
    shuffled = CounterMetricFamily("dynamr_shuffle_bytes", "Bytes of map output written for reduces (the "
                                   "shuffle) by the jobs this coordinator finished or runs", labels=[])
    shuffled.add_metric([], coordinator.shuffle_bytes_done + sum(shuffle_bytes(s) for s in running))
    yield shuffled
    swept = CounterMetricFamily("dynamr_janitor_deleted", "Intermediate objects and commit records no job needed, "
                                "deleted by the coordinator's janitor (written after every sweep of their job)",
                                labels=["kind"])
    for kind, count in zip(("object", "commit"), coordinator.janitor.deleted, strict=True):
        swept.add_metric([kind], count)
    yield swept
    rounds = CounterMetricFamily("dynamr_janitor_rounds", "Rounds of the coordinator's janitor, by outcome (done, "
                                 "or paused: another coordinator claims the store)", labels=["outcome"])
    for outcome in ("done", "paused"):
        rounds.add_metric([outcome], coordinator.janitor.rounds[outcome])
    yield rounds
    yield gauge("dynamr_coordinator_rivals", "Other coordinators whose claim on this store is live (while any is, "
                "this one accepts no job and its janitor deletes nothing)", len(coordinator.claims.rivals))
