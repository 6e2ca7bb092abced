"""Generation bundles (the Dataiku face's unit of deployment) and how a service spreads traffic over generations.

Dataiku's own bundle layout is unpublished, so modelport defines one: a ZIP whose root holds `modelport-bundle.json`:

    {"format": 1, "version": "v2", "description": "...",
     "endpoints": [
       {"id": "churn", "type": "prediction", "framework": "sklearn", "model": "models/churn.joblib",
        "task": "classification", "features": ["age", "tenure"], "classes": ["no", "yes"]},
       {"id": "score", "type": "python-function", "module": "functions/score.py", "function": "score",
        "requirements": "functions/requirements.txt"}]}

`version` is the generation id. `classes` is optional (the model's own labels are used when absent).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import jsonschema

from modelport.domain.errors import InvalidInput

MANIFEST = "modelport-bundle.json"
FORMAT = 1
IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
FRAMEWORKS = ("sklearn", "onnx", "xgboost")

_relative_path = {"type": "string", "minLength": 1, "maxLength": 400}
MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["format", "version", "endpoints"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": FORMAT},
        "version": {"type": "string", "pattern": IDENTIFIER},
        "description": {"type": "string", "maxLength": 4000},
        "endpoints": {"type": "array", "minItems": 1, "maxItems": 64, "items": {"oneOf": [
            {"type": "object", "additionalProperties": False,
             "required": ["id", "type", "framework", "model", "features"],
             "properties": {
                 "id": {"type": "string", "pattern": IDENTIFIER},
                 "type": {"const": "prediction"},
                 "framework": {"enum": list(FRAMEWORKS)},
                 "model": _relative_path,
                 "task": {"enum": ["classification", "regression"]},
                 "features": {"type": "array", "minItems": 1, "maxItems": 10_000, "uniqueItems": True,
                              "items": {"type": "string", "minLength": 1, "maxLength": 200}},
                 "classes": {"type": "array", "minItems": 2, "items": {"type": ["string", "integer", "boolean"]}},
             }},
            {"type": "object", "additionalProperties": False, "required": ["id", "type", "module", "function"],
             "properties": {
                 "id": {"type": "string", "pattern": IDENTIFIER},
                 "type": {"const": "python-function"},
                 "module": _relative_path,
                 "function": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"},
                 "requirements": _relative_path,
             }},
        ]}},
    },
}


@dataclass(frozen=True)
class BundleEndpoint:
    id: str
    type: str  # prediction | python-function
    framework: str = ""  # prediction: sklearn | onnx | xgboost; python-function: "python-function"
    file: str = ""  # the model file, or the function's module
    task: str = "classification"
    features: tuple[str, ...] = ()
    classes: tuple[Any, ...] | None = None
    function: str = ""
    requirements: str | None = None

    @property
    def dataiku_type(self) -> str:
        return "STD_PREDICTION" if self.type == "prediction" else "PYTHON_FUNCTION"

    def files(self) -> tuple[str, ...]:
        return (self.file,) + ((self.requirements,) if self.requirements else ())


@dataclass(frozen=True)
class BundleManifest:
    version: str
    endpoints: tuple[BundleEndpoint, ...]
    description: str = ""

    def endpoint(self, endpoint_id: str) -> BundleEndpoint | None:
        return next((e for e in self.endpoints if e.id == endpoint_id), None)

    def to_json(self) -> dict[str, Any]:
        endpoints = []
        for e in self.endpoints:
            if e.type == "prediction":
                item: dict[str, Any] = {"id": e.id, "type": e.type, "framework": e.framework, "model": e.file,
                                        "task": e.task, "features": list(e.features)}
                if e.classes is not None:
                    item["classes"] = list(e.classes)
            else:
                item = {"id": e.id, "type": e.type, "module": e.file, "function": e.function}
                if e.requirements:
                    item["requirements"] = e.requirements
            endpoints.append(item)
        return {"format": FORMAT, "version": self.version, "description": self.description, "endpoints": endpoints}


def parse_manifest(data: Any) -> BundleManifest:
    """Validate a manifest (already decoded from JSON); InvalidInput names the first problem."""
    errors = sorted(jsonschema.Draft202012Validator(MANIFEST_SCHEMA).iter_errors(data), key=lambda e: e.path)
    if errors:
        error = errors[0]
        where = "/".join(str(p) for p in error.absolute_path)
        raise InvalidInput(f"{MANIFEST}: {where or 'manifest'}: {_short(error)}", field="manifest")
    endpoints = []
    for item in data["endpoints"]:
        if item["type"] == "prediction":
            endpoint = BundleEndpoint(item["id"], "prediction", item["framework"], item["model"],
                                      item.get("task", "classification"), tuple(item["features"]),
                                      tuple(item["classes"]) if "classes" in item else None)
        else:
            endpoint = BundleEndpoint(item["id"], "python-function", "python-function", item["module"],
                                      function=item["function"], requirements=item.get("requirements"))
        for path in endpoint.files():
            check_member_path(path)
        endpoints.append(endpoint)
    ids = [e.id for e in endpoints]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InvalidInput(f"{MANIFEST}: endpoint id {duplicates[0]!r} appears twice", field="manifest")
    return BundleManifest(data["version"], tuple(endpoints), data.get("description", ""))


def _short(error: jsonschema.ValidationError) -> str:
    if error.validator == "oneOf" and isinstance(error.instance, dict):
        kind = error.instance.get("type")
        if kind not in ("prediction", "python-function"):
            return "type must be 'prediction' or 'python-function'"
        best = jsonschema.exceptions.best_match(error.context or [])
        return best.message if best is not None else error.message
    return error.message


def check_member_path(path: str) -> None:
    posix = PurePosixPath(path)
    if posix.is_absolute() or ".." in posix.parts or "\\" in path or "\x00" in path:
        raise InvalidInput(f"{MANIFEST}: {path!r} must be a relative path inside the bundle", field="manifest")


# -- how a service spreads traffic --------------------------------------------------------------------------------

@dataclass(frozen=True)
class MappingEntry:
    generation: str
    proba: float


@dataclass(frozen=True)
class Mapping:
    """Which generations take traffic, with what probability; `hash_based` sends one dispatch key always to the
    same generation (the key's hash picks a point on the cumulative probabilities)."""

    entries: tuple[MappingEntry, ...]
    hash_based: bool = False

    @staticmethod
    def single(generation: str) -> Mapping:
        return Mapping((MappingEntry(generation, 1.0),))

    @property
    def generations(self) -> tuple[str, ...]:
        return tuple(e.generation for e in self.entries)

    def to_json(self) -> dict[str, Any]:
        return {"entries": [{"generation": e.generation, "proba": e.proba} for e in self.entries],
                "hashBased": self.hash_based}

    def by_hash(self, key: str) -> str:
        point = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
        cumulative = 0.0
        for entry in self.entries:
            cumulative += entry.proba
            if point < cumulative:
                return entry.generation
        return self.entries[-1].generation


def parse_mapping(body: Any) -> Mapping:
    """The official client's `set_generations_mapping` body: {"entries": [{"generation", "proba"}], "hashBased"}."""
    if not isinstance(body, dict):
        raise InvalidInput("the mapping must be an object with 'entries'", field="entries")
    entries = body.get("entries")
    if not isinstance(entries, list) or not entries:
        raise InvalidInput("entries must be a non-empty list of {generation, proba}", field="entries")
    parsed = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("generation"), str):
            raise InvalidInput(f"entries[{i}].generation must be a string", field=f"entries[{i}].generation")
        proba = entry.get("proba")
        if isinstance(proba, bool) or not isinstance(proba, (int, float)) or not 0 <= proba <= 1:
            raise InvalidInput(f"entries[{i}].proba must be a number between 0 and 1", field=f"entries[{i}].proba")
        parsed.append(MappingEntry(entry["generation"], float(proba)))
    names = [e.generation for e in parsed]
    if len(set(names)) != len(names):
        raise InvalidInput("a generation appears twice in the mapping", field="entries")
    total = sum(e.proba for e in parsed)
    if abs(total - 1.0) > 1e-6:
        raise InvalidInput(f"the probabilities must sum to 1 (they sum to {total:g})", field="entries")
    hash_based = body.get("hashBased", False)
    if not isinstance(hash_based, bool):
        raise InvalidInput("hashBased must be true or false", field="hashBased")
    return Mapping(tuple(e for e in parsed if e.proba > 0), hash_based)


def mapping_from_json(data: Any) -> Mapping | None:
    if not data:
        return None
    return Mapping(tuple(MappingEntry(e["generation"], float(e["proba"])) for e in data["entries"]),
                   bool(data.get("hashBased", False)))
