"""Prometheus metrics of the data plane.

The hot path only adds to plain integers (`RequestMeter`, `BatchMeter`): prometheus_client's children take a lock per
increment and walk the buckets in Python, which costs more per request than the rest of the bookkeeping together.
Everything is turned into metric families when Prometheus (or the dashboard) collects; replica and queue gauges are
read from the plane at that moment, so they cost nothing per request either.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from modelport.serving.plane import ServingPlane

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


class Buckets:
    """A histogram without locks: only the event loop thread writes it."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, count in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts):
            total += count
            out.append((bound, total))
        return out


class RequestMeter:
    """One deployment's request outcomes and latencies, and how many answers its inference log left out."""

    __slots__ = ("success", "bad_request", "error", "latency", "unlogged")

    def __init__(self) -> None:
        self.success = self.bad_request = self.error = self.unlogged = 0
        self.latency = Buckets(LATENCY_BUCKETS)


class BatchMeter:
    """One variant's batch sizes and replica round trips."""

    __slots__ = ("rows", "seconds")

    def __init__(self) -> None:
        self.rows = Buckets(BATCH_BUCKETS)
        self.seconds = Buckets(LATENCY_BUCKETS)

    def __call__(self, rows: int, seconds: float) -> None:
        self.rows.observe(rows)
        self.seconds.observe(seconds)


class PlaneMetrics:
    """The meters by label values. They outlive deployments (a redeploy keeps counting), as Prometheus children do."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests: dict[str, RequestMeter] = {}
        self.batches: dict[tuple[str, str], BatchMeter] = {}

    def request_meter(self, deployment: str) -> RequestMeter:
        meter = self.requests.get(deployment)
        if meter is None:
            meter = self.requests[deployment] = RequestMeter()
        return meter

    def batch_meter(self, deployment: str, variant: str) -> BatchMeter:
        meter = self.batches.get((deployment, variant))
        if meter is None:
            meter = self.batches[(deployment, variant)] = BatchMeter()
        return meter

    def watch(self, plane: ServingPlane) -> None:
        self.registry.register(_MeterCollector(self))
        self.registry.register(_PlaneCollector(plane))


class _MeterCollector(Collector):
    def __init__(self, metrics: PlaneMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("modelport_inference_requests", "Inference requests by outcome.",
                                       labels=["deployment", "outcome"])
        latency = HistogramMetricFamily("modelport_inference_duration_seconds",
                                        "Time from decoded request to answer.", labels=["deployment"])
        unlogged = CounterMetricFamily("modelport_inference_log_skipped", "Answered requests the inference log "
                                       "sampled out (over MODELPORT_INFERENCE_LOG_MAX_PER_SECOND).",
                                       labels=["deployment"])
        for deployment, meter in list(self.metrics.requests.items()):
            unlogged.add_metric([deployment], meter.unlogged)
            for outcome, value in (("success", meter.success), ("bad_request", meter.bad_request),
                                   ("error", meter.error)):
                requests.add_metric([deployment, outcome], value)
            latency.add_metric([deployment], meter.latency.cumulative(), meter.latency.sum)
        rows = HistogramMetricFamily("modelport_batch_rows", "Rows per batch sent to a replica.",
                                     labels=["deployment", "variant"])
        seconds = HistogramMetricFamily("modelport_batch_duration_seconds", "Replica round trip per batch.",
                                        labels=["deployment", "variant"])
        for labels, batch in list(self.metrics.batches.items()):
            rows.add_metric(list(labels), batch.rows.cumulative(), batch.rows.sum)
            seconds.add_metric(list(labels), batch.seconds.cumulative(), batch.seconds.sum)
        yield from (requests, latency, unlogged, rows, seconds)

    def describe(self) -> list[Metric]:
        return []


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

    def describe(self) -> list[GaugeMetricFamily]:
        return []
