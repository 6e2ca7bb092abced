"""Arazzo runtime expressions ($inputs.x, $steps.s.outputs.o#/ptr, $response.body#/ptr, ...) and the `{$expr}`
templates embedded in strings. Values keep their type; only templates inside longer strings become text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import jsonpath

from modelport.workflows.files import FileInput


class ExpressionError(Exception):
    pass


class MissingValue(ExpressionError):
    """A JSON pointer into a body that lacks that member (APIs omit absent members, e.g. FailureReason)."""


@dataclass
class Exchange:
    """The request a step sent and the response it got."""

    url: str = ""
    method: str = ""
    status: int | None = None
    request_headers: dict[str, str] = field(default_factory=dict)
    request_query: dict[str, Any] = field(default_factory=dict)
    request_path: dict[str, Any] = field(default_factory=dict)
    request_body: Any = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: Any = None


@dataclass
class Context:
    inputs: dict[str, Any]
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)        # stepId -> {"outputs": {...}}
    workflows: dict[str, dict[str, Any]] = field(default_factory=dict)    # workflowId -> {"inputs", "outputs"}
    outputs: dict[str, Any] = field(default_factory=dict)                 # the current workflow's outputs
    source_descriptions: dict[str, Any] = field(default_factory=dict)
    components: dict[str, Any] = field(default_factory=dict)
    exchange: Exchange | None = None
    warnings: list[str] = field(default_factory=list)
    strict: bool = False


_EXPRESSION = re.compile(r"\$(?:url|method|statusCode|request\.[^\s{}]+|response\.[^\s{}]+|inputs\.[^\s{}]+|"
                         r"outputs\.[^\s{}]+|steps\.[^\s{}]+|workflows\.[^\s{}]+|sourceDescriptions\.[^\s{}]+|"
                         r"components\.[^\s{}]+)")
_TEMPLATE = re.compile(r"\{(\$[^{}]+)\}")


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and _EXPRESSION.fullmatch(value.strip()) is not None


def _pointer(value: Any, pointer: str | None) -> Any:
    if pointer is None or pointer == "":
        return value
    if isinstance(value, FileInput):
        value = value.text()
    try:
        return jsonpath.JSONPointer(pointer).resolve(value)
    except (jsonpath.JSONPointerError, TypeError, KeyError) as exc:
        raise MissingValue(f"JSON pointer {pointer!r} does not resolve: {exc}") from None


def _lookup(mapping: dict[str, Any], name: str, what: str) -> Any:
    if name in mapping:
        return mapping[name]
    lowered = {k.lower(): v for k, v in mapping.items()}
    if name.lower() in lowered:  # header names are case-insensitive
        return lowered[name.lower()]
    raise ExpressionError(f"{what} {name!r} is not defined")


def evaluate(expression: str, ctx: Context) -> Any:
    """The value of one runtime expression."""
    text = expression.strip()
    base, _, pointer = text.partition("#")
    pointer_or_none = pointer if "#" in text else None
    exchange = ctx.exchange
    if base == "$url":
        return exchange.url if exchange else None
    if base == "$method":
        return exchange.method if exchange else None
    if base == "$statusCode":
        return exchange.status if exchange else None
    head, _, rest = base[1:].partition(".")
    if head in ("request", "response"):
        if exchange is None:
            raise ExpressionError(f"{text}: no request has been made yet")
        kind, _, name = rest.partition(".")
        if head == "request":
            sources = {"header": exchange.request_headers, "query": exchange.request_query,
                       "path": exchange.request_path}
            if kind == "body":
                return _pointer(exchange.request_body, pointer_or_none)
        else:
            sources = {"header": exchange.response_headers}
            if kind == "body":
                return _pointer(exchange.response_body, pointer_or_none)
        if kind not in sources:
            raise ExpressionError(f"{text}: unknown source {kind!r}")
        return _lookup(sources[kind], name, f"{head} {kind}")
    if head == "inputs":
        return _pointer(_lookup(ctx.inputs, rest, "input"), pointer_or_none)
    if head == "outputs":
        return _pointer(_lookup(ctx.outputs, rest, "output"), pointer_or_none)
    if head == "steps":
        step_id, _, tail = rest.partition(".")
        if step_id not in ctx.steps:
            raise ExpressionError(f"{text}: step {step_id!r} has not run")
        section, _, name = tail.partition(".")
        if section != "outputs":
            raise ExpressionError(f"{text}: steps expose only outputs")
        return _pointer(_lookup(ctx.steps[step_id]["outputs"], name, f"output of step {step_id}"), pointer_or_none)
    if head == "workflows":
        workflow_id, _, tail = rest.partition(".")
        if workflow_id not in ctx.workflows:
            raise ExpressionError(f"{text}: workflow {workflow_id!r} has not run")
        section, _, name = tail.partition(".")
        if section not in ("inputs", "outputs"):
            raise ExpressionError(f"{text}: workflows expose inputs and outputs")
        return _pointer(_lookup(ctx.workflows[workflow_id][section], name, f"{section[:-1]} of {workflow_id}"),
                        pointer_or_none)
    if head == "sourceDescriptions":
        name, _, tail = rest.partition(".")
        value = _lookup(ctx.source_descriptions, name, "source description")
        for part in filter(None, tail.split(".")):
            value = _lookup(value, part, "field") if isinstance(value, dict) else None
        return value
    if head == "components":
        value: Any = ctx.components
        for part in rest.split("."):
            value = _lookup(value, part, "component") if isinstance(value, dict) else None
        return _pointer(value, pointer_or_none)
    raise ExpressionError(f"{text!r} is not a runtime expression")


def render(value: Any, ctx: Context) -> Any:
    """Evaluate expressions anywhere in a literal (payloads, parameter values): whole-string expressions keep their
    type, `{$expr}` templates are substituted into text."""
    if isinstance(value, dict):
        return {k: render(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, ctx) for v in value]
    if not isinstance(value, str):
        return value
    if is_expression(value):
        return evaluate(value, ctx)
    if "{$" in value:
        return _TEMPLATE.sub(lambda m: as_text(evaluate(m.group(1), ctx)), value)
    if "$" in value and _EXPRESSION.search(value):
        # Seen in real documents ("Bearer $inputs.apiKey"): an expression inside text without the braces the
        # spec asks for. Substitute it, and say so; --strict keeps the text literal, as the spec reads it.
        message = f"expression embedded in {value!r} without braces; write it as {{$...}}"
        if message not in ctx.warnings:
            ctx.warnings.append(message)
        if not ctx.strict:
            return _EXPRESSION.sub(lambda m: as_text(evaluate(m.group(0), ctx)), value)
    return value


def as_text(value: Any) -> str:
    """How a value reads inside text, a header, a query string or a form field."""
    if isinstance(value, FileInput):
        return value.text()
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value)
    return str(value)
