"""Deployments: a named live service with weighted variants; a variant is a pipeline version on N replicas.

Preload, switch and A/B are one operation: start a variant's replicas at weight 0, then change the weights
atomically; variants that lose all their weight drain and stop.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from modelport.domain.errors import InvalidInput


class DeploymentStatus(str, enum.Enum):
    STARTING = "Starting"
    RUNNING = "Running"
    ERROR = "Error"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    sha: str
    framework: str
    path: str
    requirements: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()  # set in the replica's process (a container's Environment)
    entry: str = ""  # the function a "python-function" model calls

    @property
    def tag(self) -> str:
        """Wallaroo's `last_model` metadata: a JSON string naming the model and its sha."""
        return f'{{"model_name":"{self.name}","model_sha":"{self.sha}"}}'


@dataclass(frozen=True)
class Scaling:
    """replica_min..replica_max; `initial` replicas at start (replica_min 0 starts one, then may scale to zero)."""

    initial: int = 1
    minimum: int = 1
    maximum: int = 1
    idle_s: float = 300.0

    @property
    def autoscaled(self) -> bool:
        return self.minimum != self.maximum


@dataclass(frozen=True)
class Batching:
    max_batch_rows: int = 256
    max_delay_s: float = 0.0


@dataclass(frozen=True)
class VariantSpec:
    name: str
    pipeline_version: str  # UUID
    pipeline_version_pk: int
    steps: tuple[tuple[ModelSpec, ...], ...]
    weight: float = 1.0
    scaling: Scaling = field(default_factory=Scaling)
    batching: Batching = field(default_factory=Batching)

    def worker_spec(self) -> dict[str, Any]:
        return {"steps": [{"models": [m.__dict__ | {"requirements": list(m.requirements),
                                                    "environment": dict(m.environment)} for m in step]}
                          for step in self.steps]}


@dataclass(frozen=True)
class DeploymentSpec:
    id: int
    name: str
    workspace_id: int
    pipeline_pk: int
    pipeline_name: str
    variants: tuple[VariantSpec, ...]
    face: str = "wallaroo"  # whose deployment this is: ids are unique per face

    @property
    def key(self) -> str:
        return f"{self.face}:{self.id}"

    @property
    def route(self) -> str:
        """The name requests use: Wallaroo's `<deploy_id>-<id>`; `<face>:<name>` for the other faces."""
        return f"{self.name}-{self.id}" if self.face == "wallaroo" else f"{self.face}:{self.name}"

    @property
    def routes(self) -> tuple[str, ...]:
        """Every name the plane finds it by (Wallaroo deployments also by pipeline name, for the V2 protocol)."""
        return (self.route, self.name) if self.face == "wallaroo" else (self.route,)


def _int(value: Any, field_name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise InvalidInput(f"{field_name} must be an integer", field=field_name)
    if not low <= value <= high:
        raise InvalidInput(f"{field_name} must be between {low} and {high}", field=field_name)
    return int(value)


def parse_engine_config(config: Any, *, max_replicas: int = 16, default_idle_s: float = 300.0) -> tuple[Scaling, Batching]:
    """The Wallaroo SDK's DeploymentConfigBuilder output: {"engine": {"replicas", "cpu", "memory",
    "autoscale": {"replica_min", "replica_max", ...}}, ...}; a JSON string of it is accepted too."""
    if config is None:
        return Scaling(idle_s=default_idle_s), Batching()
    if isinstance(config, str):
        import orjson

        try:
            config = orjson.loads(config) if config.strip() else {}
        except orjson.JSONDecodeError:
            raise InvalidInput("engine_config is not valid JSON", field="engine_config") from None
    if not isinstance(config, dict):
        raise InvalidInput("engine_config must be an object", field="engine_config")
    engine = config.get("engine", {}) or {}
    if not isinstance(engine, dict):
        raise InvalidInput("engine_config.engine must be an object", field="engine_config.engine")
    replicas = _int(engine.get("replicas", 1), "engine_config.engine.replicas", 0, max_replicas)
    autoscale = engine.get("autoscale") or {}
    if not isinstance(autoscale, dict):
        raise InvalidInput("engine_config.engine.autoscale must be an object", field="engine_config.engine.autoscale")
    idle_s = autoscale.get("scale_down_idle_s", default_idle_s)
    if isinstance(idle_s, bool) or not isinstance(idle_s, (int, float)) or idle_s <= 0:
        raise InvalidInput("scale_down_idle_s must be a positive number",
                           field="engine_config.engine.autoscale.scale_down_idle_s")
    if "replica_min" in autoscale or "replica_max" in autoscale:
        minimum = _int(autoscale.get("replica_min", 0), "engine_config.engine.autoscale.replica_min", 0, max_replicas)
        maximum = _int(autoscale.get("replica_max", max(minimum, replicas, 1)),
                       "engine_config.engine.autoscale.replica_max", 1, max_replicas)
        if minimum > maximum:
            raise InvalidInput("replica_min must not exceed replica_max", field="engine_config.engine.autoscale")
        initial = min(max(replicas, minimum, 1), maximum)
        scaling = Scaling(initial=initial, minimum=minimum, maximum=maximum, idle_s=float(idle_s))
    else:
        if replicas == 0:
            raise InvalidInput("engine_config.engine.replicas must be at least 1 without autoscale",
                               field="engine_config.engine.replicas")
        scaling = Scaling(initial=replicas, minimum=replicas, maximum=replicas, idle_s=float(idle_s))
    batch = engine.get("batch") or {}
    if not isinstance(batch, dict):
        raise InvalidInput("engine_config.engine.batch must be an object", field="engine_config.engine.batch")
    batching = Batching(
        max_batch_rows=_int(batch.get("max_batch_size", 256), "engine_config.engine.batch.max_batch_size", 1, 100_000),
        max_delay_s=float(_int(batch.get("max_delay_ms", 0), "engine_config.engine.batch.max_delay_ms", 0, 10_000)) / 1000,
    )
    return scaling, batching
