"""Arazzo documents and their source descriptions: loading, structural checks, and finding operations."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import jsonpath
import yaml

NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
OUTPUT_NAME = re.compile(r"^[a-zA-Z0-9.\-_]+$")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class DocumentError(Exception):
    """The document (or one it refers to) is invalid; `problems` lists what is wrong."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Operation:
    source: str
    method: str
    path: str
    spec: dict[str, Any]          # the Operation Object
    path_item: dict[str, Any]     # for path-level parameters
    document: "Source"


@dataclass
class Source:
    name: str
    url: str
    kind: str  # openapi | arazzo
    content: dict[str, Any]
    location: str

    @property
    def servers(self) -> list[dict[str, Any]]:
        return self.content.get("servers") or [{"url": "/"}]

    def resolve(self, node: Any) -> Any:
        """Follow a local `$ref` (`#/components/...`)."""
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 32:
            ref = node["$ref"]
            if not ref.startswith("#"):
                raise DocumentError([f"{self.name}: only local $ref are supported, got {ref!r}"])
            node = jsonpath.JSONPointer(ref[1:]).resolve(self.content)
            seen += 1
        return node

    def operations(self) -> list[Operation]:
        found = []
        for path, item in (self.content.get("paths") or {}).items():
            item = self.resolve(item)
            for method in METHODS:
                if method in item:
                    found.append(Operation(self.name, method, path, self.resolve(item[method]), item, self))
        return found


def _read(location: str) -> tuple[dict[str, Any], str]:
    if location.startswith(("http://", "https://")):
        text = httpx.get(location, timeout=30, follow_redirects=True).raise_for_status().text
    else:
        path = Path(location[7:] if location.startswith("file://") else location)
        text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise DocumentError([f"{location} is not a YAML or JSON object"])
    return data, location


def _locate(reference: str, base: str) -> str:
    if reference.startswith(("http://", "https://", "file://", "/")):
        return reference
    if base.startswith(("http://", "https://")):
        return urljoin(base, reference)
    return str((Path(base).resolve().parent / reference).resolve())


@dataclass
class ArazzoDocument:
    content: dict[str, Any]
    location: str
    sources: dict[str, Source] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def workflows(self) -> list[dict[str, Any]]:
        return self.content.get("workflows") or []

    @property
    def components(self) -> dict[str, Any]:
        return self.content.get("components") or {}

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        for w in self.workflows:
            if w.get("workflowId") == workflow_id:
                return w
        for source in self.sources.values():  # `$sourceDescriptions.other.wf` or a workflow of an Arazzo source
            if source.kind == "arazzo":
                for w in source.content.get("workflows") or []:
                    if w.get("workflowId") == workflow_id:
                        return w
        raise DocumentError([f"workflow {workflow_id!r} is not defined"])

    def operation_by_id(self, reference: str) -> Operation:
        source_name = None
        operation_id = reference
        if reference.startswith("$sourceDescriptions."):
            source_name, _, operation_id = reference[len("$sourceDescriptions."):].partition(".")
        candidates = [op for name, s in self.sources.items() if s.kind == "openapi"
                      and (source_name is None or name == source_name)
                      for op in s.operations() if op.spec.get("operationId") == operation_id]
        if not candidates:
            raise DocumentError([f"operationId {reference!r} is not in any source description"])
        if len(candidates) > 1:
            raise DocumentError([f"operationId {operation_id!r} is in several sources; write it as "
                                 f"$sourceDescriptions.<name>.{operation_id}"])
        return candidates[0]

    def operation_by_path(self, reference: str) -> Operation:
        """`{$sourceDescriptions.x.url}#/paths/~1pets/get` (the braces are optional)."""
        match = re.match(r"^\{?\$sourceDescriptions\.([A-Za-z0-9_\-]+)\.url\}?#(.+)$", reference)
        if match is None:
            raise DocumentError([f"operationPath {reference!r} must be {{$sourceDescriptions.<name>.url}}#<pointer>"])
        name, pointer = match.groups()
        source = self.sources.get(name)
        if source is None:
            raise DocumentError([f"operationPath {reference!r}: no source description {name!r}"])
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.strip("/").split("/")]
        if len(parts) != 3 or parts[0] != "paths" or parts[2] not in METHODS:
            raise DocumentError([f"operationPath {reference!r} must point at /paths/<path>/<method>"])
        item = source.resolve((source.content.get("paths") or {}).get(parts[1]))
        if not item or parts[2] not in item:
            raise DocumentError([f"operationPath {reference!r} does not exist in {name}"])
        return Operation(name, parts[2], parts[1], source.resolve(item[parts[2]]), item, source)


def load(location: str | Path, *, strict: bool = False) -> ArazzoDocument:
    """Read and check the document and its source descriptions; DocumentError lists every problem found."""
    try:
        content, where = _read(str(location))
    except (OSError, httpx.HTTPError, yaml.YAMLError) as exc:
        raise DocumentError([f"cannot read {location}: {exc}"]) from None
    document = ArazzoDocument(content, where)
    problems: list[str] = []
    _check(document, problems, strict)
    for description in content.get("sourceDescriptions") or []:
        name = description.get("name", "")
        try:
            data, at = _read(_locate(description.get("url", ""), where))
        except (OSError, httpx.HTTPError, yaml.YAMLError, DocumentError) as exc:
            problems.append(f"source description {name!r}: cannot read {description.get('url')!r}: {exc}")
            continue
        kind = description.get("type") or ("arazzo" if "arazzo" in data else "openapi")
        if kind == "openapi" and not str(data.get("openapi", "")).startswith(("3.0", "3.1")):
            problems.append(f"source description {name!r} is not OpenAPI 3.0 or 3.1")
        document.sources[name] = Source(name, description.get("url", ""), kind, data, at)
    if problems:
        raise DocumentError(problems)
    _check_steps(document, problems)
    if problems:
        raise DocumentError(problems)
    return document


def _check(document: ArazzoDocument, problems: list[str], strict: bool) -> None:
    content = document.content
    version = str(content.get("arazzo", ""))
    if not re.match(r"^1\.0\.\d+$", version):
        problems.append(f"arazzo must be 1.0.x, got {version!r}")
    info = content.get("info")
    if not isinstance(info, dict) or "title" not in info or "version" not in info:
        problems.append("info with title and version is required")
    sources = content.get("sourceDescriptions")
    if not isinstance(sources, list) or not sources:
        problems.append("sourceDescriptions must list at least one source")
    else:
        for s in sources:
            if not isinstance(s, dict) or not NAME.match(str(s.get("name", ""))) or not s.get("url"):
                problems.append(f"source description {s!r} needs a name matching [A-Za-z0-9_-]+ and a url")
            elif s.get("type") not in (None, "openapi", "arazzo"):
                problems.append(f"source description {s['name']!r}: type must be openapi or arazzo")
    workflows = content.get("workflows")
    if not isinstance(workflows, list) or not workflows:
        problems.append("workflows must list at least one workflow")
        return
    seen: set[str] = set()
    for w in workflows:
        wid = w.get("workflowId") if isinstance(w, dict) else None
        if not isinstance(wid, str) or not NAME.match(wid):
            problems.append(f"workflowId {wid!r} must match [A-Za-z0-9_-]+")
            continue
        if wid in seen:
            problems.append(f"workflowId {wid!r} is defined twice")
        seen.add(wid)
        steps = w.get("steps")
        if not isinstance(steps, list) or not steps:
            problems.append(f"workflow {wid!r} has no steps")
            continue
        step_ids: set[str] = set()
        for step in steps:
            sid = step.get("stepId") if isinstance(step, dict) else None
            if not isinstance(sid, str) or not NAME.match(sid):
                problems.append(f"workflow {wid!r}: stepId {sid!r} must match [A-Za-z0-9_-]+")
                continue
            if sid in step_ids:
                problems.append(f"workflow {wid!r}: stepId {sid!r} is used twice")
            step_ids.add(sid)
            targets = [k for k in ("operationId", "operationPath", "workflowId") if k in step]
            if len(targets) != 1:
                problems.append(f"step {sid!r}: exactly one of operationId, operationPath, workflowId is required")
            for key in ("onSuccess", "onFailure"):
                for action in step.get(key) or []:
                    _check_action(action, f"step {sid!r} {key}", document, problems, strict)
            for name in (step.get("outputs") or {}):
                if not OUTPUT_NAME.match(name):
                    problems.append(f"step {sid!r}: output name {name!r} must match [a-zA-Z0-9.-_]+")
            criteria = list(step.get("successCriteria") or [])
            for key in ("onSuccess", "onFailure"):
                for action in step.get(key) or []:
                    criteria += (action.get("criteria") or []) if isinstance(action, dict) else []
            for criterion in criteria:
                _check_criterion(criterion, f"step {sid!r}", document, problems, strict)
            _check_unbraced(step, f"step {sid!r}", document)
        for key in ("successActions", "failureActions"):
            for action in w.get(key) or []:
                _check_action(action, f"workflow {wid!r} {key}", document, problems, strict)
        for name in (w.get("outputs") or {}):
            if not OUTPUT_NAME.match(name):
                problems.append(f"workflow {wid!r}: output name {name!r} must match [a-zA-Z0-9.-_]+")


def _check_criterion(criterion: Any, where: str, document: ArazzoDocument, problems: list[str], strict: bool) -> None:
    if not isinstance(criterion, dict) or not isinstance(criterion.get("condition"), str):
        problems.append(f"{where}: a criterion needs a condition")
        return
    kind = criterion.get("type", "simple")
    kind = kind.get("type") if isinstance(kind, dict) else kind
    if kind not in ("simple", "regex", "jsonpath", "xpath"):
        problems.append(f"{where}: criterion type {kind!r} is not simple, regex, jsonpath or xpath")
    elif kind != "simple" and not criterion.get("context"):
        problems.append(f"{where}: a {kind} criterion needs a context")
    elif kind == "jsonpath":
        try:
            jsonpath.compile(criterion["condition"])
        except jsonpath.JSONPathSyntaxError:
            message = f"{where}: jsonpath condition {criterion['condition']!r} is a comparison, not an RFC 9535 query"
            if strict:
                problems.append(message + " (refused under --strict)")
            else:
                document.warnings.append(message + " (evaluated as: path, then compare)")


def _check_unbraced(node: Any, where: str, document: ArazzoDocument) -> None:
    """Strings like "Bearer $inputs.apiKey": the spec wants {$inputs.apiKey} inside text."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in ("condition", "context", "operationId", "operationPath", "workflowId"):
                _check_unbraced(value, where, document)
    elif isinstance(node, list):
        for value in node:
            _check_unbraced(value, where, document)
    elif isinstance(node, str) and not node.startswith("$") and re.search(r"(?<!\{)\$(inputs|steps|response|request|"
                                                                          r"workflows|outputs)\.", node):
        document.warnings.append(f"{where}: {node!r} embeds an expression without braces; it is substituted "
                                 "(under --strict it stays text)")


def _check_action(action: Any, where: str, document: ArazzoDocument, problems: list[str], strict: bool) -> None:
    if not isinstance(action, dict):
        problems.append(f"{where}: an action must be an object")
        return
    if "reference" in action:
        return  # a reusable action from components, checked when used
    if "name" not in action:
        message = f"{where}: action of type {action.get('type')!r} has no name (required by the spec)"
        if strict:
            problems.append(message + " (refused under --strict)")
        else:
            document.warnings.append(message)
    if action.get("type") not in ("end", "goto", "retry"):
        problems.append(f"{where}: action type must be end, goto or retry, got {action.get('type')!r}")
    if action.get("type") == "goto" and not (action.get("stepId") or action.get("workflowId")):
        problems.append(f"{where}: a goto needs a stepId or a workflowId")


def _check_steps(document: ArazzoDocument, problems: list[str]) -> None:
    for w in document.workflows:
        step_ids = {s.get("stepId") for s in w.get("steps", [])}
        for step in w.get("steps", []):
            try:
                if "operationId" in step:
                    document.operation_by_id(step["operationId"])
                elif "operationPath" in step:
                    document.operation_by_path(step["operationPath"])
                elif "workflowId" in step:
                    document.workflow(step["workflowId"].rsplit(".", 1)[-1])
            except DocumentError as exc:
                problems.extend(f"workflow {w.get('workflowId')!r} step {step.get('stepId')!r}: {p}" for p in exc.problems)
            for key in ("onSuccess", "onFailure"):
                for action in step.get(key) or []:
                    target = isinstance(action, dict) and action.get("stepId")
                    if target and target not in step_ids:
                        problems.append(f"step {step.get('stepId')!r}: goto to unknown step {target!r}")


def base_url(source: Source, override: str | None, variables: dict[str, str]) -> str:
    """The server URL to send to: the override (--server), else the first server with its variables filled in."""
    if override:
        return override.rstrip("/")
    server = source.servers[0]
    url = server.get("url", "/")
    for name, spec in (server.get("variables") or {}).items():
        url = url.replace("{" + name + "}", variables.get(name, str(spec.get("default", ""))))
    if not urlsplit(url).scheme:  # a relative server URL: relative to the source document
        url = urljoin(source.location, url) if source.location.startswith("http") else url
    return url.rstrip("/")
