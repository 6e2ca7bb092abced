"""Prometheus metrics of the data plane. Counters and histograms are updated where the work happens; replica and
queue gauges are read from the plane when Prometheus scrapes, so they cost nothing per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from modelport.serving.plane import ServingPlane

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


class PlaneMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("modelport_inference_requests", "Inference requests by outcome.",
                                ["deployment", "outcome"], registry=self.registry)
        self.latency = Histogram("modelport_inference_duration_seconds", "Time from decoded request to answer.",
                                 ["deployment"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram("modelport_batch_rows", "Rows per batch sent to a replica.",
                                    ["deployment", "variant"], buckets=_BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("modelport_batch_duration_seconds", "Replica round trip per batch.",
                                       ["deployment", "variant"], buckets=_LATENCY_BUCKETS, registry=self.registry)

    def watch(self, plane: ServingPlane) -> None:
        self.registry.register(_PlaneCollector(plane))


class _PlaneCollector(Collector):
    def __init__(self, plane: ServingPlane) -> None:
        self.plane = plane

    def collect(self) -> Iterator[GaugeMetricFamily]:
        replicas = GaugeMetricFamily("modelport_replicas", "Replicas by state.", labels=["deployment", "variant", "state"])
        queued = GaugeMetricFamily("modelport_queued_rows", "Rows waiting for a replica.", labels=["deployment", "variant"])
        weight = GaugeMetricFamily("modelport_variant_weight", "Share of traffic.", labels=["deployment", "variant"])
        for live in list(self.plane.deployments.values()):
            for variant in list(live.variants):
                labels = [live.spec.route, variant.name]
                counts: dict[str, int] = {}
                for r in variant.replicas:
                    counts[r.state] = counts.get(r.state, 0) + 1
                for state in ("Starting", "Running", "Error"):
                    replicas.add_metric([*labels, state], counts.get(state, 0))
                queued.add_metric(labels, variant.batcher.pending_rows())
                weight.add_metric(labels, variant.weight)
        yield replicas
        yield queued
        yield weight

    def describe(self) -> list:
        return []
