"""Inference log sampling under load: every request at a normal rate, every k-th one above the configured rate."""

from __future__ import annotations

from types import SimpleNamespace

from modelport.serving.metrics import RequestMeter
from modelport.services.inference_log import InferenceLogService


def test_inference_log_samples_evenly_above_its_rate() -> None:
    service = InferenceLogService(None, max_per_second=10)  # type: ignore[arg-type]
    live = SimpleNamespace(spec=SimpleNamespace(id=1), meter=RequestMeter())
    result = SimpleNamespace(variant=SimpleNamespace(spec=SimpleNamespace(pipeline_version="v")))

    def send(second: int, count: int) -> list[int]:
        before = len(service._pending)
        for i in range(count):
            service.record(live, result, SimpleNamespace(time_ms=second * 1000 + i, metadata={"elapsed": [i]}))
        return [entry[3] for entry in list(service._pending)[before:]]

    assert send(100, 5) == [0, 1, 2, 3, 4]  # under the rate: every request
    assert send(101, 100) == list(range(10))  # the rate jumped: the first ten, then none this second
    assert send(102, 100) == list(range(9, 100, 10))  # now every tenth, spread over the second
    assert send(200, 3) == [0, 1, 2]  # after a quiet gap: every request again
    assert live.meter.unlogged == 90 + 90
