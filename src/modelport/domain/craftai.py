"""Craft AI-style function pipelines and deployments: the rules, no I/O.

A pipeline is one Python function with typed inputs and outputs. A deployment runs it on a rule: `endpoint` (an
HTTP call with an endpoint token) or `periodic` (a 5-field UTC cron). Mappings say where each input comes from
(endpoint input, constant, environment variable, null, datastore path) and where each output goes (endpoint output,
null, datastore path). Endpoint deployments map what is left unmapped to endpoint inputs and outputs of the same
name; periodic deployments must map everything explicitly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from modelport.domain.errors import InvalidInput

NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DATA_TYPES = ("string", "number", "boolean", "json", "array", "file")
EXECUTION_RULES = ("endpoint", "periodic")
MODES = ("elastic", "low_latency")
INPUT_SOURCES = ("endpoint_input_name", "constant_value", "environment_variable_name", "is_null", "datastore_path")
OUTPUT_DESTINATIONS = ("endpoint_output_name", "is_null", "datastore_path")
# the execution record's word for each source / destination (the SDK shows it as `source` / `destination`)
MAPPING_TYPES = {"endpoint_input_name": "endpoint", "constant_value": "constant",
                 "environment_variable_name": "environment_variable", "is_null": "is_null",
                 "datastore_path": "datastore", "endpoint_output_name": "endpoint"}


def check_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise InvalidInput(f"{field} must be 1-63 lower-case letters, digits or '-', starting and ending with a "
                           "letter or digit", field=field)
    return value


@dataclass(frozen=True)
class Parameter:
    """A pipeline input or output."""

    name: str
    data_type: str
    description: str | None = None
    is_required: bool = True
    default_value: Any = None

    def to_json(self, *, output: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "data_type": self.data_type}
        if self.description is not None:
            body["description"] = self.description
        if not output:
            body["is_required"] = self.is_required
            if self.default_value is not None:
                body["default_value"] = self.default_value
        return body


def _bool(value: Any, field: str) -> bool:
    """Multipart forms carry booleans as "True"/"False" (the SDK's own spelling)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInput(f"{field} must be true or false", field=field)


def parse_parameters(items: Any, field: str, *, output: bool = False) -> tuple[Parameter, ...]:
    if items is None:
        return ()
    if not isinstance(items, list):
        raise InvalidInput(f"{field} must be a list", field=field)
    parameters = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where} must be an object", field=where)
        name = item.get("name")
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", name):
            raise InvalidInput(f"{where}.name must be a Python identifier", field=f"{where}.name")
        data_type = item.get("data_type")
        if data_type not in DATA_TYPES:
            raise InvalidInput(f"{where}.data_type must be one of {', '.join(DATA_TYPES)}", field=f"{where}.data_type")
        required = _bool(item.get("is_required", True), f"{where}.is_required") if not output else True
        default = item.get("default_value")
        parameters.append(Parameter(name, data_type, item.get("description"), required, default))
    names = [p.name for p in parameters]
    if len(set(names)) != len(names):
        raise InvalidInput(f"{field} names a parameter twice", field=field)
    return tuple(parameters)


def check_value(parameter: Parameter, value: Any) -> Any:
    """The value an execution receives for `parameter`, type-checked (None passes: a null input)."""
    if value is None:
        return None
    kind = parameter.data_type
    ok = {
        "string": isinstance(value, str),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list),
        "json": True,
        "file": isinstance(value, (bytes, dict)),
    }[kind]
    if not ok:
        raise InvalidInput(f"input {parameter.name!r} must be of type {kind}", field=parameter.name)
    return value


# -- mappings -------------------------------------------------------------------------------------------------------

def parse_inputs_mapping(items: Any, inputs: tuple[Parameter, ...], rule: str) -> list[dict[str, Any]]:
    """Explicit mappings validated; on the endpoint rule, unmapped inputs become endpoint inputs of the same name."""
    if items is not None and not isinstance(items, list):
        raise InvalidInput("inputs_mapping must be a list", field="inputs_mapping")
    by_name = {p.name: p for p in inputs}
    mapped: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(items or []):
        where = f"inputs_mapping[{i}]"
        if not isinstance(item, dict) or item.get("pipeline_input_name") not in by_name:
            raise InvalidInput(f"{where}.pipeline_input_name must name an input of the pipeline",
                               field=f"{where}.pipeline_input_name")
        name = item["pipeline_input_name"]
        sources = [s for s in INPUT_SOURCES if item.get(s) is not None]
        if len(sources) != 1:
            raise InvalidInput(f"{where} must have exactly one source among {', '.join(INPUT_SOURCES)}", field=where)
        source = sources[0]
        if rule == "periodic" and source == "endpoint_input_name":
            raise InvalidInput(f"{where}: a periodic deployment has no endpoint inputs", field=where)
        if source == "datastore_path":
            check_datastore_path(item[source], f"{where}.datastore_path", template=True)
        if source in ("endpoint_input_name", "environment_variable_name") and not isinstance(item[source], str):
            raise InvalidInput(f"{where}.{source} must be a string", field=f"{where}.{source}")
        if name in mapped:
            raise InvalidInput(f"input {name!r} is mapped twice", field=where)
        entry = {"pipeline_input_name": name, source: item[source]}
        for extra in ("is_required", "default_value"):
            if item.get(extra) is not None:
                entry[extra] = item[extra]
        mapped[name] = entry
    for parameter in inputs:
        if parameter.name not in mapped:
            if rule == "periodic":
                raise InvalidInput(f"input {parameter.name!r} is not mapped: a periodic deployment maps every input "
                                   "explicitly", field="inputs_mapping")
            mapped[parameter.name] = {"pipeline_input_name": parameter.name, "endpoint_input_name": parameter.name}
    return [mapped[p.name] for p in inputs]


def parse_outputs_mapping(items: Any, outputs: tuple[Parameter, ...], rule: str) -> list[dict[str, Any]]:
    if items is not None and not isinstance(items, list):
        raise InvalidInput("outputs_mapping must be a list", field="outputs_mapping")
    names = {p.name for p in outputs}
    mapped: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(items or []):
        where = f"outputs_mapping[{i}]"
        if not isinstance(item, dict) or item.get("pipeline_output_name") not in names:
            raise InvalidInput(f"{where}.pipeline_output_name must name an output of the pipeline",
                               field=f"{where}.pipeline_output_name")
        name = item["pipeline_output_name"]
        destinations = [d for d in OUTPUT_DESTINATIONS if item.get(d) is not None]
        if len(destinations) != 1:
            raise InvalidInput(f"{where} must have exactly one destination among {', '.join(OUTPUT_DESTINATIONS)}",
                               field=where)
        destination = destinations[0]
        if rule == "periodic" and destination == "endpoint_output_name":
            raise InvalidInput(f"{where}: a periodic deployment has no endpoint outputs", field=where)
        if destination == "datastore_path":
            check_datastore_path(item[destination], f"{where}.datastore_path", template=True)
        if name in mapped:
            raise InvalidInput(f"output {name!r} is mapped twice", field=where)
        mapped[name] = {"pipeline_output_name": name, destination: item[destination]}
    for parameter in outputs:
        if parameter.name not in mapped:
            if rule == "periodic":
                raise InvalidInput(f"output {parameter.name!r} is not mapped: a periodic deployment maps every "
                                   "output explicitly", field="outputs_mapping")
            mapped[parameter.name] = {"pipeline_output_name": parameter.name, "endpoint_output_name": parameter.name}
    return [mapped[p.name] for p in outputs]


def source_of(mapping: dict[str, Any], kinds: tuple[str, ...] = INPUT_SOURCES) -> str:
    return next(k for k in kinds if k in mapping)


# -- datastore paths -----------------------------------------------------------------------------------------------

def check_datastore_path(path: Any, field: str, *, template: bool = False) -> str:
    if not isinstance(path, str) or not path.strip("/") or len(path) > 1024 or "\x00" in path or "\\" in path:
        raise InvalidInput(f"{field} must be a path in the datastore", field=field)
    parts = PurePosixPath(path.strip("/")).parts
    if ".." in parts or "." in parts:
        raise InvalidInput(f"{field} must not contain '.' or '..' segments", field=field)
    if template:
        unknown = set(re.findall(r"\{([^}]*)\}", path)) - {"execution_id", "date", "date_time"}
        if unknown:
            raise InvalidInput(f"{field}: unknown placeholder {{{sorted(unknown)[0]}}} (use {{execution_id}}, "
                               "{date} or {date_time})", field=field)
    return path.strip("/")


def render_datastore_path(path: str, execution_id: str, at: datetime) -> str:
    return (path.replace("{execution_id}", execution_id).replace("{date}", at.strftime("%Y-%m-%d"))
            .replace("{date_time}", at.strftime("%Y-%m-%dT%H-%M-%S")))
