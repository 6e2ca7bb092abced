"""The data plane, protocol-agnostic: every face (Wallaroo, Open Inference Protocol, SageMaker, Dataiku) decodes
its wire format to columns and calls `ServingPlane.infer`. Deployments live here in memory, so the hot path never
touches the database: a route lookup is a dict access.

`apply(spec)` is the one way to change what serves: variants new to the spec start warm (weight 0) beside the old
ones; once all are ready, weights flip in one assignment; variants no longer in the spec drain and stop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.domain.deployments import DeploymentSpec, DeploymentStatus, VariantSpec
from modelport.domain.errors import InvalidInput, NotFound, NotReady
from modelport.serving.batcher import Batcher, BatchResult
from modelport.serving.codecs import V2_TYPES, check_inputs
from modelport.serving.metrics import PlaneMetrics, RequestMeter
from modelport.serving.replica import BatchRejected, Replica, ReplicaFailed
from modelport.serving.runtimes import Columns

log = logging.getLogger(__name__)

# Resolves the python interpreter a variant's replicas use (a cached environment when models need requirements).
EnvironmentResolver = Callable[[VariantSpec], Awaitable[str | None]]


@dataclass(slots=True)
class InferenceResult:
    outputs: Columns
    variant: Variant
    replica: str
    elapsed: list[int]
    meta: dict[str, Any] = field(default_factory=dict)


class Variant:
    """One pipeline version on a pool of replicas, with its batcher and its scaling rules."""

    def __init__(self, deployment: LiveDeployment, spec: VariantSpec, run_dir: Path, settings: PlaneSettings,
                 serials: Iterator[int]) -> None:
        self.deployment = deployment
        self.serials = serials  # plane-wide: a replica's name (socket, log, work folder) is never reused
        self.spec = spec
        self.run_dir = run_dir
        self.settings = settings
        self.weight = 0.0
        self.replicas: list[Replica] = []
        self.batcher = Batcher(max_batch_rows=spec.batching.max_batch_rows, max_delay_s=spec.batching.max_delay_s,
                               on_replica_lost=self._replica_lost)
        self.error: str | None = None
        self.python: str | None = None
        self.last_request = time.monotonic()
        self._contract: tuple[dict[str, Any] | None, frozenset[str] | None] | None = None
        self._starting = 0
        self._stopped = False
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def name(self) -> str:
        return self.spec.name

    # -- lifecycle -------------------------------------------------------------------------------------------------
    async def start(self, resolve_environment: EnvironmentResolver) -> None:
        """Start the initial replicas; raise ReplicaFailed (with the reason) if none can load."""
        try:
            self.python = await resolve_environment(self.spec)
        except Exception as exc:
            self.error = f"could not build the model environment: {exc}"
            raise ReplicaFailed(self.error) from None
        results = await asyncio.gather(*(self._start_replica() for _ in range(self.spec.scaling.initial)),
                                       return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures and len(failures) == len(results):
            self.error = str(failures[0])
            raise ReplicaFailed(self.error)

    async def _start_replica(self) -> Replica:
        route = self.deployment.spec.route.replace("/", "-")  # the name is also a file name (socket, log)
        name = f"engine-{route}-{self.spec.name}-{next(self.serials)}"
        replica = Replica(name, self.spec.worker_spec(), self.run_dir, python=self.python,
                          on_exit=self._replica_exited, variant=f"{self.deployment.spec.key}/{self.spec.name}")
        self.replicas.append(replica)
        self._starting += 1
        try:
            await replica.start(self.settings.replica_start_timeout_s)
        except ReplicaFailed:
            raise
        finally:
            self._starting -= 1
        if self._stopped:
            await replica.stop()
            return replica
        self.error = None
        self.last_request = time.monotonic()  # a new replica gets a whole idle window before it may be stopped
        self.batcher.add_replica(replica)
        return replica

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _replica_exited(self, replica: Replica) -> None:
        self.batcher.remove_replica(replica)
        if not self._stopped:
            self._spawn(self._restart(replica))

    def _replica_lost(self, replica: Replica) -> None:
        self.batcher.remove_replica(replica)

    async def _restart(self, replica: Replica) -> None:
        """A replica that died is replaced, with back-off while it keeps failing; its status shows meanwhile."""
        delay = 0.5
        while not self._stopped and replica in self.replicas:
            try:
                await replica.start(self.settings.replica_start_timeout_s)
            except ReplicaFailed as exc:
                log.warning("restarting %s failed: %s", replica.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            if self._stopped:
                await replica.stop()
            else:
                self.batcher.add_replica(replica)
            return

    async def stop(self) -> None:
        self._stopped = True
        self.batcher.fail_all(NotReady("the deployment was stopped"))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(r.stop() for r in self.replicas), return_exceptions=True)
        self.replicas.clear()
        # A batch whose replica just stopped under it hands its requests back to the queue for another try: once
        # those batches have ended, nothing will ever serve the queue again, so answer it.
        deadline = time.monotonic() + 1.0
        while self.batcher.in_flight_batches and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.batcher.fail_all(NotReady("the deployment was stopped"))

    async def drain_and_stop(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self.batcher.drained(), timeout_s)
        except asyncio.TimeoutError:
            log.warning("variant %s did not drain within %s s", self.name, timeout_s)
        await self.stop()

    # -- scaling ---------------------------------------------------------------------------------------------------
    @property
    def live_replicas(self) -> int:
        return sum(1 for r in self.replicas if r.state in (Replica.RUNNING, Replica.STARTING))

    def ensure_capacity(self) -> None:
        """Called on every request when no replica runs: wake one (scale from zero)."""
        if self.live_replicas == 0 and self._starting == 0 and not self._stopped:
            self._spawn(self._scale_up())

    async def _scale_up(self) -> None:
        try:
            await self._start_replica()
        except ReplicaFailed as exc:
            self.error = str(exc)
            self.batcher.fail_all(NotReady(f"no replica could start: {exc}"))
            failed = [r for r in self.replicas if r.state == Replica.ERROR]
            for r in failed[:-1]:  # keep the latest failure for the status, not one per attempt
                self.replicas.remove(r)

    async def resize(self, count: int) -> None:
        """Fixed-size variants (min == max): start or stop replicas until `count` run."""
        live = [r for r in self.replicas if r.state in (Replica.RUNNING, Replica.STARTING)]
        if len(live) < count:
            await asyncio.gather(*(self._start_replica() for _ in range(count - len(live))), return_exceptions=True)
        for victim in live[count:]:
            self.replicas.remove(victim)
            self.batcher.remove_replica(victim)
            await victim.stop()

    async def autoscale(self, now: float) -> None:
        scaling = self.spec.scaling
        if self._stopped or not scaling.autoscaled:
            return
        running = [r for r in self.replicas if r.state == Replica.RUNNING]
        backlog = self.batcher.pending_rows()
        if backlog > 0 and len(self.replicas) < scaling.maximum and self._starting == 0 \
                and backlog > self.settings.scale_up_backlog_rows * max(len(running), 1):
            self._spawn(self._scale_up())
        elif now - self.last_request > scaling.idle_s and len(running) > scaling.minimum \
                and self.batcher.in_flight_batches == 0 and not self.batcher.queue:
            victim = running[-1]
            self.replicas.remove(victim)
            self.batcher.remove_replica(victim)
            self.last_request = now  # one replica per idle window
            await victim.stop()

    # -- status ----------------------------------------------------------------------------------------------------
    @property
    def status(self) -> DeploymentStatus:
        states = [r.state for r in self.replicas]
        if Replica.RUNNING in states and all(s == Replica.RUNNING for s in states):
            return DeploymentStatus.RUNNING
        if not states and self.spec.scaling.minimum == 0 and self.error is None:
            return DeploymentStatus.RUNNING  # scaled to zero: the next request wakes it
        if self.error and Replica.RUNNING not in states and self._starting == 0:
            return DeploymentStatus.ERROR
        return DeploymentStatus.STARTING

    @property
    def input_signature(self) -> dict[str, Any] | None:
        """What the first step takes, as its replica reported after loading (None until one has loaded)."""
        return self.contract()[0]

    @property
    def default_outputs(self) -> frozenset[str] | None:
        """The last step's outputs not marked optional (None: all of them)."""
        return self.contract()[1]

    def contract(self) -> tuple[dict[str, Any] | None, frozenset[str] | None]:
        """(input signature, default outputs), read once from the first replica that loaded: every replica of a
        variant loads the same models, and the hot path asks on every request."""
        if self._contract is not None:
            return self._contract
        for r in self.replicas:
            if r.models:
                outputs = (r.models[-1].get("signature") or {}).get("outputs")
                primary = None
                if outputs and any(o.get("optional") for o in outputs):
                    primary = frozenset(o["name"] for o in outputs if not o.get("optional"))
                self._contract = (r.models[0].get("signature"), primary)
                return self._contract
        return None, None

    def empty_outputs(self, wanted: frozenset[str] | None) -> Columns:
        """The last step's outputs with zero rows (shapes and types from its signature), for a request with zero
        rows: nothing to compute, so no replica hop, and models need not accept empty batches. Empty when no
        replica has reported a signature yet (a variant scaled to zero)."""
        for r in self.replicas:
            if r.models:
                declared = (r.models[-1].get("signature") or {}).get("outputs") or []
                break
        else:
            declared = []
        outputs: Columns = {}
        for o in declared:
            if wanted is not None and o["name"] not in wanted:
                continue
            dims = [d if type(d) is int and d > 0 else 0 for d in (o.get("shape") or [-1])[1:]]
            outputs[o["name"]] = np.empty((0, *dims), dtype=V2_TYPES.get(o.get("datatype"), np.float64))
        return outputs

    def models(self) -> list[dict[str, Any]]:
        for r in self.replicas:
            if r.models:
                return r.models
        return [{"name": m.name, "version": m.version, "sha": m.sha} for step in self.spec.steps for m in step]


class LiveDeployment:
    def __init__(self, spec: DeploymentSpec) -> None:
        self.spec = spec
        self.variants: list[Variant] = []
        self.error: str | None = None
        self.removed = False  # set by `remove`; an `apply` still starting replicas then stops them instead
        self.meter: RequestMeter | None = None
        self.started_at = time.time()

    def pick(self, target: str | None = None) -> Variant:
        """By weight; `target` (a variant name or pipeline version) forces one."""
        variants = self.variants
        if target is not None:
            for v in variants:
                if target in (v.name, v.spec.pipeline_version):
                    return v
            raise NotFound(f"variant {target!r} is not live in deployment {self.spec.name!r}", field="variant")
        if len(variants) == 1:
            return variants[0]
        live = [v for v in variants if v.weight > 0]
        if not live:
            raise NotReady(f"deployment {self.spec.name!r} has no variant taking traffic")
        return random.choices(live, weights=[v.weight for v in live])[0]

    @property
    def status(self) -> DeploymentStatus:
        if not self.variants:
            return DeploymentStatus.ERROR if self.error else DeploymentStatus.STARTING
        statuses = {v.status for v in self.variants if v.weight > 0} or {v.status for v in self.variants}
        if DeploymentStatus.ERROR in statuses:
            return DeploymentStatus.ERROR
        if statuses == {DeploymentStatus.RUNNING}:
            return DeploymentStatus.RUNNING
        return DeploymentStatus.STARTING


@dataclass(frozen=True)
class PlaneSettings:
    replica_start_timeout_s: float = 120.0
    cold_start_timeout_s: float = 120.0
    request_timeout_s: float = 300.0
    drain_timeout_s: float = 30.0
    scale_up_backlog_rows: int = 64
    autoscale_interval_s: float = 1.0


class ServingPlane:
    def __init__(self, settings: PlaneSettings, resolve_environment: EnvironmentResolver | None = None) -> None:
        self.settings = settings
        self.metrics = PlaneMetrics()
        self.metrics.watch(self)
        self.resolve_environment = resolve_environment or _base_python
        self.deployments: dict[str, LiveDeployment] = {}  # by DeploymentSpec.key ("<face>:<id>")
        self.routes: dict[str, LiveDeployment] = {}  # by every name in DeploymentSpec.routes
        self.run_dir = Path(tempfile.mkdtemp(prefix="mp-"))  # short: Unix socket paths are limited to 107 bytes
        self._locks: dict[int, asyncio.Lock] = {}
        self._serials = itertools.count(1)
        self._autoscaler: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._autoscaler = asyncio.get_running_loop().create_task(self._housekeeping())

    async def close(self) -> None:
        if self._autoscaler is not None:
            self._autoscaler.cancel()
        await asyncio.gather(*(self.remove(d) for d in list(self.deployments)), return_exceptions=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # -- control -----------------------------------------------------------------------------------------------------
    async def apply(self, spec: DeploymentSpec) -> None:
        """Make `spec` live: new variants warm first, then one atomic weight flip, then old variants drain."""
        lock = self._locks.setdefault(spec.key, asyncio.Lock())
        async with lock:
            live = self.deployments.get(spec.key)
            if live is None:
                live = LiveDeployment(spec)
                self.deployments[spec.key] = live
                self._index(live)
            wanted = {v.name: v for v in spec.variants}
            current = {v.name: v for v in live.variants}
            fresh = [self._variant(live, vs) for name, vs in wanted.items()
                     if name not in current or current[name].spec.pipeline_version != vs.pipeline_version
                     or current[name].spec.steps != vs.steps]
            if not live.variants:
                live.variants = fresh  # first start: visible at once, so status shows Starting
            results = await asyncio.gather(*(v.start(self.resolve_environment) for v in fresh),
                                           return_exceptions=True)
            if live.removed:  # undeployed while we were starting: nothing of this apply may keep running
                await asyncio.gather(*(v.stop() for v in fresh), return_exceptions=True)
                return
            failed = [(v, r) for v, r in zip(fresh, results) if isinstance(r, BaseException)]
            if failed:
                live.error = f"variant {failed[0][0].name}: {failed[0][1]}"
                if live.variants is not fresh:  # an update failed: the old variants keep serving, untouched
                    await asyncio.gather(*(v.stop() for v in fresh), return_exceptions=True)
                    return
            else:
                live.error = None
            fresh_names = {v.name for v in fresh}
            keep = [current[n] for n in wanted if n in current and n not in fresh_names]
            for v in keep:
                v.spec = wanted[v.name]  # same models: only weight or scaling changed
                if not v.spec.scaling.autoscaled:
                    await v.resize(v.spec.scaling.initial)
            new_variants = keep + fresh
            retired = [v for v in live.variants if v not in new_variants]
            total = sum(wanted[v.name].weight for v in new_variants) or 1.0
            for v in new_variants:
                v.weight = wanted[v.name].weight / total
            live.variants = new_variants  # the flip: one assignment, the event loop never sees a half state
            live.spec = spec
            self._index(live)
            for v in retired:
                v.weight = 0.0
            await asyncio.gather(*(v.drain_and_stop(self.settings.drain_timeout_s) for v in retired),
                                 return_exceptions=True)

    def _variant(self, live: LiveDeployment, spec: VariantSpec) -> Variant:
        variant = Variant(live, spec, self.run_dir, self.settings, self._serials)
        variant.batcher.observers.append(self.metrics.batch_meter(live.spec.route, spec.name))
        return variant

    def _index(self, live: LiveDeployment) -> None:
        for key, value in list(self.routes.items()):
            if value is live:
                del self.routes[key]
        self.routes[live.spec.route] = live
        for alias in live.spec.routes[1:]:
            self.routes.setdefault(alias, live)

    async def remove(self, key: str) -> bool:
        live = self.deployments.pop(key, None)
        if live is None:
            return False
        live.removed = True
        for key, value in list(self.routes.items()):
            if value is live:
                del self.routes[key]
        await asyncio.gather(*(v.stop() for v in live.variants), return_exceptions=True)
        return True

    # -- data ----------------------------------------------------------------------------------------------------------
    def lookup(self, route: str) -> LiveDeployment:
        live = self.routes.get(route)
        if live is None:
            raise NotFound(f"no live deployment {route!r}", field="deployment")
        return live

    async def infer(self, live: LiveDeployment, columns: Columns, rows: int, *, target: str | None = None,
                    outputs: frozenset[str] | None = None, default_outputs: bool = False,
                    invocation: dict[str, Any] | None = None) -> InferenceResult:
        """Run one request through the deployment. `outputs` limits what is computed; `default_outputs` asks for the
        model's primary outputs only when `outputs` is not given (the Open Inference Protocol's convention).
        `invocation` marks raw bytes for a handler model (see `invoke_raw`): no column checks, never batched.

        This is the hot path: one coroutine frame between the face and the batcher's future, plain-integer meters."""
        started = time.perf_counter()
        meter = live.meter or self._meter(live)
        try:
            variant = live.pick(target)
            variant.last_request = time.monotonic()
            if invocation is None:
                signature, primary_outputs = variant.contract()
                check_inputs(columns, signature, rows)
                if outputs is None and default_outputs:
                    outputs = primary_outputs
                if rows == 0:  # zero rows in, zero rows out: nothing for a model to do
                    meter.success += 1
                    return InferenceResult(variant.empty_outputs(outputs), variant, "", [])
            batcher = variant.batcher
            if batcher.replicas == 0:
                self._wake(live, variant)
            # No timer per request: the housekeeping loop expires requests that wait too long (`_housekeeping`).
            result: BatchResult = await batcher.submit(columns, rows, outputs, invocation)
        except BatchRejected as exc:
            if exc.kind != "input":
                meter.error += 1
                raise
            meter.bad_request += 1
            raise InvalidInput(exc.args[0]) from None
        except ReplicaFailed as exc:
            meter.error += 1
            raise NotReady(str(exc)) from None
        except InvalidInput:
            meter.bad_request += 1
            raise
        except Exception:
            meter.error += 1
            raise
        meter.success += 1
        meter.latency.observe(time.perf_counter() - started)
        return InferenceResult(result.outputs, variant, result.replica, result.elapsed, result.meta)

    async def invoke_raw(self, live: LiveDeployment, body: bytes, content_type: str, accept: str, *,
                         target: str | None = None) -> tuple[bytes, str, Variant]:
        """Raw bytes through a handler model (SageMaker's inference.py): one request per replica hop."""
        invocation = {"op": "invoke", "content_type": content_type, "accept": accept}
        result = await self.infer(live, {"body": np.frombuffer(body, dtype=np.uint8)}, 1, target=target,
                                  invocation=invocation)
        return result.outputs["body"].tobytes(), result.meta.get("content_type", "application/json"), result.variant

    def _meter(self, live: LiveDeployment) -> RequestMeter:
        live.meter = self.metrics.request_meter(live.spec.route)
        return live.meter

    @staticmethod
    def _wake(live: LiveDeployment, variant: Variant) -> None:
        """No replica runs: refuse at once if the variant keeps failing, else start one (scale from zero)."""
        if variant.status == DeploymentStatus.ERROR and variant.spec.scaling.minimum > 0:
            raise NotReady(f"deployment {live.spec.name!r} is failing: {variant.error}")
        variant.ensure_capacity()

    async def _housekeeping(self) -> None:
        """Housekeeping, about once a second: expire requests that waited too long, replace replicas stuck on a
        batch, and autoscale."""
        while True:
            await asyncio.sleep(self.settings.autoscale_interval_s)
            now = time.monotonic()
            for live in list(self.deployments.values()):
                for variant in list(live.variants):
                    try:
                        self._expire(variant)
                        await variant.autoscale(now)
                    except Exception:
                        log.exception("housekeeping of %s failed", variant.name)

    def _expire(self, variant: Variant) -> None:
        cold = variant.batcher.replicas == 0
        waiting_limit = self.settings.cold_start_timeout_s if cold else self.settings.request_timeout_s
        for replica in variant.batcher.expire(queue_timeout_s=waiting_limit, cold=cold,
                                              batch_timeout_s=self.settings.request_timeout_s):
            log.warning("replica %s did not answer a batch within %s s: replacing it", replica.name,
                        self.settings.request_timeout_s)
            if replica.process is not None:
                replica.process.kill()  # its watcher restarts it


async def _base_python(_: VariantSpec) -> str | None:
    return None
