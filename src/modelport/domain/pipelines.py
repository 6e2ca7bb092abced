"""Pipeline definitions: an ordered list of steps, each naming model versions by name, version and sha."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelport.domain.errors import InvalidInput


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    sha: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha": self.sha}


@dataclass(frozen=True)
class Step:
    """One ModelInference step. Several models in a step are alternatives served side by side (A/B in Wallaroo)."""

    models: tuple[ModelRef, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"ModelInference": {"models": [m.as_dict() for m in self.models]}}


def parse_definition(definition: object) -> list[Step]:
    """Accept `{}`, `{"steps": [...]}` (or a JSON string of either, as older clients send) and return the steps."""
    if isinstance(definition, str):
        import orjson

        try:
            definition = orjson.loads(definition) if definition.strip() else {}
        except orjson.JSONDecodeError:
            raise InvalidInput("definition is not valid JSON", field="definition") from None
    if definition is None:
        return []
    if not isinstance(definition, dict):
        raise InvalidInput("definition must be an object, {} for an empty pipeline", field="definition")
    unknown = set(definition) - {"steps"}
    if unknown:
        raise InvalidInput(f"definition has unknown keys: {', '.join(sorted(unknown))}", field="definition")
    raw_steps = definition.get("steps", [])
    if not isinstance(raw_steps, list):
        raise InvalidInput("definition.steps must be a list", field="definition.steps")
    return [_parse_step(raw, i) for i, raw in enumerate(raw_steps)]


def _parse_step(raw: object, index: int) -> Step:
    where = f"definition.steps[{index}]"
    if not isinstance(raw, dict) or set(raw) != {"ModelInference"}:
        raise InvalidInput(f"{where} must be an object with exactly one key, ModelInference", field=where)
    body = raw["ModelInference"]
    if not isinstance(body, dict) or not isinstance(body.get("models"), list) or not body["models"]:
        raise InvalidInput(f"{where}.ModelInference.models must be a non-empty list", field=f"{where}.ModelInference.models")
    refs = []
    for j, model in enumerate(body["models"]):
        at = f"{where}.ModelInference.models[{j}]"
        if not isinstance(model, dict):
            raise InvalidInput(f"{at} must be an object with name, version and sha", field=at)
        values = []
        for key in ("name", "version", "sha"):
            value = model.get(key)
            if not isinstance(value, str) or not value:
                raise InvalidInput(f"{at}.{key} is required and must be a non-empty string", field=f"{at}.{key}")
            values.append(value)
        refs.append(ModelRef(*values))
    return Step(tuple(refs))


def definition_dict(steps: list[Step]) -> dict[str, Any]:
    return {"steps": [s.as_dict() for s in steps]}
