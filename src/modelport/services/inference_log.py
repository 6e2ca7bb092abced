"""Inference logs per pipeline version (time, in, out, elapsed) with bounded retention.

The hot path only appends a reference to a bounded deque; a background task turns batches of them into rows and
writes them off the event loop, then trims each pipeline version to its newest `retention` rows.

Above `max_per_second` requests a second on one deployment, every k-th request is logged (k from the previous
second's rate, like SageMaker Data Capture's sampling percentage, but only under load): with 10,000 rows kept per
version, logging every request at thousands a second would write rows only to trim them seconds later, and the
writing was the largest cost of the pandas-records endpoint over the Open Inference Protocol one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from starlette.concurrency import run_in_threadpool

from modelport.domain.errors import InvalidInput
from modelport.serving.codecs import Answer
from modelport.serving.plane import InferenceResult, LiveDeployment
from modelport.store.bulk import insert_inference_logs
from modelport.store.database import Database, json_text
from modelport.store.tables import InferenceLog

log = logging.getLogger(__name__)


def _rows(columns: dict[str, np.ndarray], rows: int, limit: int) -> dict[str, Any]:
    """The first `limit` rows of each column, as array views: the JSON column encodes them without Python lists."""
    return columns if rows <= limit else {name: array[:limit] for name, array in columns.items()}


class _Rate:
    """Per deployment: the current second, requests seen in it, and the stride between logged ones."""

    __slots__ = ("second", "seen", "stride")

    def __init__(self) -> None:
        self.second, self.seen, self.stride = -1, 0, 1


class InferenceLogService:
    def __init__(self, db: Database, *, retention: int = 10_000, max_rows_per_request: int = 100,
                 max_pending: int = 10_000, flush_interval_s: float = 1.0, trim_interval_s: float = 10.0,
                 max_per_second: int = 1000) -> None:
        self.db = db
        self.max_per_second = max_per_second
        self._rates: dict[int, _Rate] = {}
        self._flushing = asyncio.Lock()
        self.trim_interval_s = trim_interval_s
        self._last_trim = 0.0
        self._versions_written: set[str] = set()
        self.retention = retention
        self.max_rows = max_rows_per_request
        self.flush_interval_s = flush_interval_s
        self._pending: deque[tuple[int, str, Answer, int]] = deque(maxlen=max_pending)  # drops oldest if flooded
        self._task: asyncio.Task[None] | None = None

    def record(self, live: LiveDeployment, result: InferenceResult, answer: Answer) -> None:
        deployment_id = live.spec.id
        if self.max_per_second:
            rate = self._rates.get(deployment_id) or self._rates.setdefault(deployment_id, _Rate())
            second = answer.time_ms // 1000
            if second != rate.second:  # a new second: stride from the last one's rate (a gap means a slow rate)
                rate.stride = max(1, -(-rate.seen // self.max_per_second)) if second == rate.second + 1 else 1
                rate.second, rate.seen = second, 0
            rate.seen += 1
            if rate.seen % rate.stride or rate.seen > rate.stride * self.max_per_second:
                if live.meter is not None:
                    live.meter.unlogged += 1
                return
        self._pending.append((deployment_id, result.variant.spec.pipeline_version, answer,
                              answer.metadata["elapsed"][-1]))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.flush()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            try:
                await self.flush()
            except Exception:
                log.exception("writing inference logs failed")

    async def flush(self) -> None:
        """Write what is pending. Flushes run one at a time, so a reader that flushes first (get_logs) also waits
        for rows the background flush already took but has not committed yet."""
        async with self._flushing:
            batch = []
            while self._pending:
                batch.append(self._pending.popleft())
            if batch:
                await run_in_threadpool(self._write, batch)

    def _write(self, batch: list[tuple[int, str, Answer, int]]) -> None:
        """One bulk INSERT straight to the driver: under load this runs for thousands of rows a second in the API
        process, and SQLAlchemy's per-row parameter processing (ORM bulk path, type processors) was most of its cost
        and held the GIL the event loop needs."""
        with self.db.session() as s:
            connection = s.connection()
            limit = self.max_rows
            insert_inference_logs(connection, [
                (version, deployment_id, answer.time_ms, answer.rows, elapsed,
                 json_text(_rows(answer.inputs, answer.rows, limit)),
                 json_text(_rows(answer.outputs, answer.rows, limit)))
                for deployment_id, version, answer, elapsed in batch])
            self._versions_written.update(version for _, version, _, _ in batch)
            now = time.monotonic()
            if now - self._last_trim < self.trim_interval_s:
                return
            self._last_trim = now
            versions, self._versions_written = self._versions_written, set()
            for version in versions:
                count = s.scalar(select(func.count()).where(InferenceLog.pipeline_version == version)) or 0
                if count > self.retention:
                    cutoff = s.scalar(select(InferenceLog.id).where(InferenceLog.pipeline_version == version)
                                      .order_by(InferenceLog.id.desc()).offset(self.retention).limit(1))
                    s.execute(delete(InferenceLog).where(InferenceLog.pipeline_version == version,
                                                         InferenceLog.id <= cutoff))

    def query(self, pipeline_versions: list[str], limit: int) -> list[dict[str, Any]]:
        if not 1 <= limit <= 10_000:
            raise InvalidInput("limit must be between 1 and 10000", field="limit")
        with self.db.session() as s:
            rows = s.scalars(select(InferenceLog).where(InferenceLog.pipeline_version.in_(pipeline_versions))
                             .order_by(InferenceLog.id.desc()).limit(limit))
            return [{"time": int(r.time.timestamp() * 1000), "in": r.inputs, "out": r.outputs, "rows": r.rows,
                     "elapsed_ns": r.elapsed_ns, "pipeline_version": r.pipeline_version} for r in rows]
