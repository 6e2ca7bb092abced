"""Adaptive batching: requests queue per variant; whenever a replica is free, everything compatible that is waiting
(up to max_batch_size rows) goes to it as one batch, so one model call and one inter-process hop serve them all.

There is no fixed wait: with an idle replica a lone request is sent at the end of the current event-loop turn
(Triton's max_queue_delay 0, DataLoader's per-tick batching), so requests the server read together go together
instead of the first one going alone. Under load, batches also form by themselves while replicas are busy.
`max_delay_s` > 0 lets a small batch wait that long to fill.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.domain.errors import InternalError, NotReady, Timeout
from modelport.serving.replica import BatchRejected, Replica, ReplicaFailed
from modelport.serving.runtimes import Columns

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BatchResult:
    outputs: Columns
    elapsed: list[int]
    replica: str
    batch_rows: int
    meta: dict[str, Any] = field(default_factory=dict)  # the replica's reply header (e.g. a content type)


@dataclass(slots=True)
class Pending:
    columns: Columns
    rows: int
    signature: tuple[Any, ...]
    future: asyncio.Future[BatchResult]
    enqueued: float = field(default_factory=time.perf_counter)
    retried: bool = False
    alone: bool = False  # run in a batch of its own (its batch was refused for bad input)
    outputs: frozenset[str] | None = None
    extra: dict[str, Any] | None = None  # more header fields for the replica (a raw invocation); never batched


def signature_of(columns: Columns, outputs: frozenset[str] | None) -> tuple[Any, ...]:
    """Requests can share a batch when their columns agree in name, dtype and row shape, and they want the same
    outputs."""
    return (outputs, *((name, a.dtype, a.shape[1:]) for name, a in columns.items()))


def concat(batch: list[Pending]) -> Columns:
    if len(batch) == 1:
        return batch[0].columns
    return {name: np.concatenate([p.columns[name] for p in batch]) for name in batch[0].columns}


def split(outputs: Columns, batch: list[Pending]) -> list[Columns]:
    if len(batch) == 1:
        return [outputs]
    parts: list[Columns] = []
    start = 0
    for p in batch:
        parts.append({name: array[start:start + p.rows] for name, array in outputs.items()})
        start += p.rows
    return parts


class Batcher:
    def __init__(self, *, max_batch_rows: int = 256, max_delay_s: float = 0.0,
                 on_replica_lost: Callable[[Replica], None] | None = None) -> None:
        self.max_batch_rows = max_batch_rows
        self.max_delay_s = max_delay_s
        self.on_replica_lost = on_replica_lost
        self.queue: deque[Pending] = deque()
        self.idle: deque[Replica] = deque()
        self.busy: set[Replica] = set()
        self.running: dict[Replica, tuple[float, list[Pending]]] = {}  # batch start time, its requests
        self.in_flight_batches = 0
        self._timer: asyncio.TimerHandle | None = None
        self._flush_scheduled = False
        self._drained = asyncio.Event()
        self._drained.set()
        self.observers: list[Callable[[int, float], None]] = []  # (batch rows, seconds) for metrics

    # -- replicas come and go ------------------------------------------------------------------------------------
    def add_replica(self, replica: Replica) -> None:
        self.idle.append(replica)
        self._dispatch()

    def remove_replica(self, replica: Replica) -> None:
        if replica in self.idle:
            self.idle.remove(replica)
        self.busy.discard(replica)

    @property
    def replicas(self) -> int:
        return len(self.idle) + len(self.busy)

    # -- requests --------------------------------------------------------------------------------------------------
    def submit(self, columns: Columns, rows: int, outputs: frozenset[str] | None = None,
               extra: dict[str, Any] | None = None) -> asyncio.Future[BatchResult]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[BatchResult] = loop.create_future()
        self.queue.append(Pending(columns, rows, signature_of(columns, outputs), future, outputs=outputs, extra=extra,
                                  alone=extra is not None))
        self._drained.clear()
        if self.idle and not self._flush_scheduled:
            # After every request already read in this loop turn has been submitted: measured at 64 connections,
            # dispatching inline sent a third of all batches with a single row.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._dispatch()

    def pending_rows(self) -> int:
        return sum(p.rows for p in self.queue)

    async def drained(self) -> None:
        """Wait until nothing is queued or in flight (used before stopping an old variant)."""
        await self._drained.wait()

    def fail_all(self, error: Exception) -> None:
        while self.queue:
            pending = self.queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(error)
        self._update_drained()

    def expire(self, *, queue_timeout_s: float, batch_timeout_s: float, now: float | None = None,
               cold: bool = False) -> list[Replica]:
        """Fail requests that waited longer than `queue_timeout_s` for a replica, and the requests of batches running
        longer than `batch_timeout_s`; return the replicas stuck on such batches (the caller replaces them).
        Called about once a second instead of arming a timer per request."""
        now = time.perf_counter() if now is None else now
        while self.queue and now - self.queue[0].enqueued > queue_timeout_s:
            pending = self.queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(  # no replica at all (scaled to zero, still starting) is a 503
                    NotReady(f"no replica started within {queue_timeout_s:.0f} s") if cold
                    else Timeout(f"no replica took the request within {queue_timeout_s:.0f} s"))
        stuck = []
        for replica, (started, batch) in list(self.running.items()):
            if now - started > batch_timeout_s:
                stuck.append(replica)
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(Timeout(f"the model did not answer within {batch_timeout_s:.0f} s"))
        self._update_drained()
        return stuck

    def _update_drained(self) -> None:
        if not self.queue and self.in_flight_batches == 0:
            self._drained.set()

    def _dispatch(self) -> None:
        while self.queue and self.idle:
            if self.max_delay_s > 0 and self.pending_rows() < self.max_batch_rows:
                wait = self.queue[0].enqueued + self.max_delay_s - time.perf_counter()
                if wait > 0:
                    if self._timer is None:
                        self._timer = asyncio.get_running_loop().call_later(wait, self._on_timer)
                    return
            batch = self._take_batch()
            if not batch:
                continue
            replica = self.idle.popleft()
            self.busy.add(replica)
            self.in_flight_batches += 1
            self.running[replica] = (time.perf_counter(), batch)  # committed now: `expire` watches it
            asyncio.get_running_loop().create_task(self._run(replica, batch))

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take_batch(self) -> list[Pending]:
        first = self.queue.popleft()
        if first.future.done():  # its caller gave up (timeout, disconnect)
            self._update_drained()
            return []
        batch, rows = [first], first.rows
        if first.alone:
            return batch
        kept: deque[Pending] = deque()
        while self.queue and rows < self.max_batch_rows:
            candidate = self.queue.popleft()
            if candidate.future.done():
                continue
            if (not candidate.alone and candidate.signature == first.signature
                    and rows + candidate.rows <= self.max_batch_rows):
                batch.append(candidate)
                rows += candidate.rows
            else:
                kept.append(candidate)
        self.queue.extendleft(reversed(kept))
        return batch

    async def _run(self, replica: Replica, batch: list[Pending]) -> None:
        """Send one batch and answer its requests. Whatever goes wrong, every request of the batch is answered, failed
        or queued again before this returns, and the replica goes back to work: nothing waits forever on a batch
        whose task died."""
        rows = sum(p.rows for p in batch)
        started = self.running[replica][0]
        lost = False
        settled = False  # True once every request of the batch was answered, failed or queued again
        try:
            try:
                outputs, elapsed, meta = await replica.infer(concat(batch), rows, batch[0].outputs, batch[0].extra)
            except ReplicaFailed as exc:
                lost = True
                for p in batch:  # the replica died under this batch: give each request one more chance elsewhere
                    if p.future.done():
                        continue
                    if p.retried:
                        p.future.set_exception(exc)
                    else:
                        p.retried = True
                        self.queue.appendleft(p)
            except BatchRejected as exc:
                if len(batch) > 1 and exc.kind == "input":
                    self._isolate(batch)  # one request's bad input must not fail its neighbours: run them alone
                else:
                    _fail(batch, exc)
            except Exception as exc:  # noqa: BLE001 - building or encoding the batch failed before anything was sent
                if len(batch) > 1:
                    self._isolate(batch)  # find the one request it is about; the others are served
                else:
                    log.exception("batch of %d rows for replica %s could not be sent", rows, replica.name)
                    _fail(batch, InternalError(f"internal error ({type(exc).__name__}); see the server log"))
            else:
                try:
                    parts = split(outputs, batch)
                    for p, part in zip(batch, parts):
                        if not p.future.done():
                            p.future.set_result(BatchResult(part, elapsed, replica.name, rows, meta))
                except Exception as exc:  # noqa: BLE001 - the reply could not be split into answers
                    log.exception("the reply of replica %s could not be split over %d requests", replica.name,
                                  len(batch))
                    _fail(batch, InternalError(f"internal error ({type(exc).__name__}); see the server log"))
                seconds = time.perf_counter() - started
                for observe in self.observers:
                    observe(rows, seconds)
            settled = True
        finally:
            if not settled:  # cancelled, or a bug above: no request of this batch may be left waiting
                _fail(batch, InternalError("internal error: the batch was abandoned; see the server log"))
            self.running.pop(replica, None)
            self.in_flight_batches -= 1
            self.busy.discard(replica)
            if lost:
                if self.on_replica_lost is not None:
                    self.on_replica_lost(replica)
            elif replica.state == Replica.RUNNING:
                self.idle.append(replica)
            self._update_drained()
            if self.queue and not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    def _isolate(self, batch: list[Pending]) -> None:
        for p in reversed(batch):
            if not p.future.done():
                p.alone = True
                self.queue.appendleft(p)


def _fail(batch: list[Pending], error: BaseException) -> None:
    for p in batch:
        if not p.future.done():
            p.future.set_exception(error)
