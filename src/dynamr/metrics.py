"""Prometheus metrics of a node or of the coordinator, served at ``/metrics`` (see :mod:`dynamr.web`).

Hot paths only count: :class:`RequestStats` keeps, per message type, plain integers (requests by outcome,
a histogram of handling time) that the RPC dispatcher bumps at a cost of a dict lookup and a bisect; the
``prometheus_client`` families are built only when someone scrapes. Everything else (keys, hints, peers
down, handoffs, repairs, task attempts, jobs) is read from the process's own state at scrape time by the
*sources* a process registers: a source is a function returning metric families.

Each process has a registry of its own (several nodes may share one test process).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

#: upper bounds, seconds, of the request-time histogram's buckets
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Source = Callable[[], Iterable[Metric]]


class _TypeStats:
    __slots__ = ("buckets", "outcomes", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.outcomes: dict[str, int] = {}


class RequestStats:
    """Requests a dispatcher handled, by message type: outcomes ("ok" or the error's code) and times."""

    def __init__(self) -> None:
        self._types: dict[str, _TypeStats] = {}

    def observe(self, kind: str, seconds: float, outcome: str) -> None:
        stats = self._types.get(kind)
        if stats is None:
            stats = self._types[kind] = _TypeStats()
        stats.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        stats.total += seconds
        stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1

    def count(self, kind: str, outcome: str = "ok") -> int:
        stats = self._types.get(kind)
        return stats.outcomes.get(outcome, 0) if stats else 0

    def families(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("dynamr_requests", "Requests handled, by message type and outcome "
                                       "(ok, or the error's code: quorum, unavailable, bad_request, ...)",
                                       labels=["type", "outcome"])
        seconds = HistogramMetricFamily("dynamr_request_seconds", "Time to handle a request, by message type",
                                        labels=["type"])
        for kind in sorted(self._types):
            stats = self._types[kind]
            for outcome in sorted(stats.outcomes):
                requests.add_metric([kind, outcome], stats.outcomes[outcome])
            running, cumulative = 0, []
            for bound, count in zip([*map(str, BUCKETS), "+Inf"], stats.buckets, strict=True):
                running += count
                cumulative.append((bound, running))
            seconds.add_metric([kind], cumulative, stats.total)
        yield requests
        yield seconds


class _Collector:
    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source()


class Metrics:
    """A process's metrics: its request statistics and the sources read at scrape time."""

    def __init__(self, process: str) -> None:
        self.process = process
        self.requests = RequestStats()
        self.started = time.time()
        self._sources: list[Source] = [self.requests.families, self._process_families]
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self._sources))

    def add_source(self, source: Source) -> None:
        self._sources.append(source)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric, now."""
        return generate_latest(self.registry)

    def _process_families(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("dynamr_start_time_seconds", "When this process started (seconds since 1970)",
                               labels=["process"])
        up.add_metric([self.process], self.started)
        yield up


def gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def counter(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family
