"""The adaptive batcher on its own, with an in-process stand-in for a replica."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from modelport.domain.errors import InternalError, NotReady, Timeout
from modelport.serving.batcher import Batcher
from modelport.serving.replica import BatchRejected, Replica


class FakeReplica:
    """Doubles column x; refuses batches holding a negative value; `gate` holds batches until released."""

    state = Replica.RUNNING

    def __init__(self, name: str = "r1") -> None:
        self.name = name
        self.batches: list[tuple[int, frozenset | None]] = []
        self.gate: asyncio.Event | None = None

    async def infer(self, columns, rows, outputs=None, extra=None):
        self.batches.append((rows, outputs))
        if self.gate is not None:
            await self.gate.wait()
        if (columns["x"] < 0).any():
            raise BatchRejected("input", "negative input")
        return {"y": columns["x"] * 2}, [1], {"ok": True}


def run(coro):
    return asyncio.run(coro)


def test_a_lone_request_goes_out_at_once_and_results_split_back_exactly() -> None:
    async def scenario():
        batcher = Batcher(max_batch_rows=100)
        replica = FakeReplica()
        batcher.add_replica(replica)
        lone = await asyncio.wait_for(batcher.submit({"x": np.array([1.0])}, 1), 1)
        assert lone.outputs["y"].tolist() == [2.0] and replica.batches == [(1, None)]

        replica.gate = asyncio.Event()  # hold the replica busy so the next requests queue up
        first = batcher.submit({"x": np.array([0.0])}, 1)
        await asyncio.sleep(0)
        waiting = [batcher.submit({"x": np.arange(n, dtype=float)}, n) for n in (1, 2, 3)]
        replica.gate.set()
        await first
        results = await asyncio.gather(*waiting)
        assert [r.outputs["y"].tolist() for r in results] == [[0.0], [0.0, 2.0], [0.0, 2.0, 4.0]]
        assert replica.batches[-1] == (6, None)  # the three waiting requests went as one batch
        return batcher

    batcher = run(scenario())
    assert not batcher.queue and batcher.in_flight_batches == 0


def test_different_outputs_or_shapes_never_share_a_batch_and_a_bad_request_fails_alone() -> None:
    async def scenario():
        batcher = Batcher(max_batch_rows=100)
        replica = FakeReplica()
        replica.gate = asyncio.Event()
        batcher.add_replica(replica)
        blocker = batcher.submit({"x": np.array([0.0])}, 1)
        await asyncio.sleep(0)
        a = batcher.submit({"x": np.array([1.0])}, 1, frozenset({"y"}))
        b = batcher.submit({"x": np.array([2.0])}, 1)
        c = batcher.submit({"x": np.array([[3.0, 3.0]])}, 1)
        bad = batcher.submit({"x": np.array([-1.0])}, 1)
        good = batcher.submit({"x": np.array([5.0])}, 1)
        replica.gate.set()
        await blocker
        assert (await a).outputs["y"].tolist() == [2.0]
        assert (await b).outputs["y"].tolist() == [4.0]
        assert (await c).outputs["y"].tolist() == [[6.0, 6.0]]
        with pytest.raises(BatchRejected):
            await bad
        assert (await good).outputs["y"].tolist() == [10.0]
        assert (1, frozenset({"y"})) in replica.batches

    run(scenario())


def test_expiry_fails_stuck_batches_and_old_waiters() -> None:
    async def scenario():
        batcher = Batcher(max_batch_rows=10)
        replica = FakeReplica()
        replica.gate = asyncio.Event()
        batcher.add_replica(replica)
        stuck = batcher.submit({"x": np.array([1.0])}, 1)
        await asyncio.sleep(0)
        queued = batcher.submit({"x": np.array([[1.0, 2.0]])}, 1)
        assert batcher.expire(queue_timeout_s=60, batch_timeout_s=60) == []
        victims = batcher.expire(queue_timeout_s=60, batch_timeout_s=60, now=time.perf_counter() + 100)
        assert victims == [replica]
        with pytest.raises(Timeout):
            await stuck
        with pytest.raises(Timeout):
            await queued
        cold = batcher.submit({"x": np.array([3.0])}, 1)  # waiting with no replica at all: a 503, not a 504
        batcher.expire(queue_timeout_s=60, batch_timeout_s=60, now=time.perf_counter() + 100, cold=True)
        with pytest.raises(NotReady):
            await cold

    run(scenario())


def test_requests_submitted_in_the_same_loop_turn_share_a_batch_even_with_an_idle_replica() -> None:
    async def scenario():
        batcher = Batcher(max_batch_rows=100)
        replica = FakeReplica()
        batcher.add_replica(replica)
        together = [batcher.submit({"x": np.array([float(n)])}, 1) for n in range(5)]
        results = await asyncio.gather(*together)
        assert [r.outputs["y"].tolist() for r in results] == [[0.0], [2.0], [4.0], [6.0], [8.0]]
        assert replica.batches == [(5, None)]  # not the first one alone, then the other four

    run(scenario())


class BrokenReplica(FakeReplica):
    """Fails the way a bug would: `fail` is raised from infer (while building or sending the batch); `short` makes
    the reply one row short (so splitting it fails)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: BaseException | None = None
        self.short = False

    async def infer(self, columns, rows, outputs=None, extra=None):
        self.batches.append((rows, outputs))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None and (columns["x"] == 13).any():
            raise self.fail
        if self.short:
            return {"y": np.array(5.0)}, [1], {"ok": True}  # 0-d: cannot be cut into rows
        return {"y": columns["x"] * 2}, [1], {"ok": True}


@pytest.mark.parametrize("error", [TypeError("cannot encode"), RuntimeError("bug"), asyncio.CancelledError()])
def test_any_exception_in_a_batch_fails_only_its_requests_and_the_batcher_keeps_serving(error) -> None:
    """Before: a TypeError while a batch was sent killed its task and its requests waited forever."""

    async def scenario():
        batcher = Batcher(max_batch_rows=100)
        replica = BrokenReplica()
        replica.fail = error
        batcher.add_replica(replica)
        replica.gate = asyncio.Event()
        first = batcher.submit({"x": np.array([1.0])}, 1)
        await asyncio.sleep(0)
        good = batcher.submit({"x": np.array([2.0])}, 1)
        bad = batcher.submit({"x": np.array([13.0])}, 1)  # batched with `good`: only `bad` may fail
        replica.gate.set()
        assert (await asyncio.wait_for(first, 1)).outputs["y"].tolist() == [2.0]
        if isinstance(error, asyncio.CancelledError):
            with pytest.raises(InternalError):
                await asyncio.wait_for(bad, 1)
            await asyncio.wait_for(asyncio.gather(good, return_exceptions=True), 1)
        else:
            assert (await asyncio.wait_for(good, 1)).outputs["y"].tolist() == [4.0]
            with pytest.raises(InternalError):
                await asyncio.wait_for(bad, 1)
        after = await asyncio.wait_for(batcher.submit({"x": np.array([3.0])}, 1), 1)
        assert after.outputs["y"].tolist() == [6.0]
        return batcher

    batcher = run(scenario())
    assert not batcher.queue and batcher.in_flight_batches == 0 and batcher.idle


def test_a_reply_that_cannot_be_split_fails_its_batch_with_a_500_not_a_hang() -> None:
    async def scenario():
        batcher = Batcher(max_batch_rows=100)
        replica = BrokenReplica()
        replica.short = True
        batcher.add_replica(replica)
        replica.gate = asyncio.Event()
        futures = [batcher.submit({"x": np.array([1.0, 2.0])}, 2) for _ in range(3)]
        replica.gate.set()
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 1)
        replica.short = False
        after = await asyncio.wait_for(batcher.submit({"x": np.array([3.0])}, 1), 1)
        return results, after

    results, after = run(scenario())
    assert after.outputs["y"].tolist() == [6.0]
    # the first went alone (nothing to split); the two batched behind it get a 500 each, not a hang
    assert [type(r) for r in results[1:]] == [InternalError, InternalError]
