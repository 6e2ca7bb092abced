"""Executes Arazzo workflows: builds each step's HTTP request from its operation, checks success criteria, follows
success and failure actions (end, goto, retry), and collects outputs and a trace of every exchange."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import jsonschema

from modelport.workflows import criteria
from modelport.workflows.document import ArazzoDocument, DocumentError, Operation, base_url
from modelport.workflows.expressions import Context, Exchange, ExpressionError, MissingValue, render
from modelport.workflows.expressions import as_text as _scalar
from modelport.workflows.files import FileInput


class WorkflowFailed(Exception):
    def __init__(self, message: str, step: str | None = None) -> None:
        super().__init__(message)
        self.step = step


class InvalidInputs(Exception):
    pass


@dataclass
class TraceEntry:
    workflow: str
    step: str
    request: dict[str, Any]
    response: dict[str, Any]
    success: bool
    action: str
    seconds: float


@dataclass
class RunResult:
    ok: bool
    outputs: dict[str, Any]
    trace: list[TraceEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    failed_step: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "outputs": self.outputs, "error": self.error, "failed_step": self.failed_step,
                "warnings": self.warnings, "trace": [e.__dict__ for e in self.trace]}


_JSON_TYPES = ("application/json", "application/x-amz-json")


def is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind.startswith(_JSON_TYPES) or kind.endswith("+json")


class WorkflowRunner:
    def __init__(self, document: ArazzoDocument, *, servers: dict[str, str] | None = None,
                 server_variables: dict[str, str] | None = None, headers: dict[str, dict[str, str]] | None = None,
                 strict: bool = False, max_steps: int = 1000, poll_interval_s: float = 1.0,
                 aws_profile: str | None = None, sign_sources: set[str] | None = None,
                 client: httpx.Client | None = None, on_step: Callable[[TraceEntry], None] | None = None,
                 timeout_s: float = 60.0) -> None:
        self.document = document
        self.servers = servers or {}
        self.server_variables = server_variables or {}
        self.headers = headers or {}
        self.strict = strict
        self.max_steps = max_steps
        self.poll_interval_s = poll_interval_s
        self.aws_profile = aws_profile
        self.sign_sources = sign_sources
        self.client = client or httpx.Client(timeout=timeout_s)
        self.on_step = on_step
        self._steps_taken = 0

    # -- entry point ---------------------------------------------------------------------------------------------------
    def run(self, workflow_id: str | None = None, inputs: dict[str, Any] | None = None) -> RunResult:
        workflow_id = workflow_id or self.document.workflows[0]["workflowId"]
        ctx = Context(inputs=dict(inputs or {}), strict=self.strict,
                      source_descriptions={name: {"url": s.url, "name": name} for name, s in self.document.sources.items()},
                      components=self.document.components, warnings=list(self.document.warnings))
        trace: list[TraceEntry] = []
        self._steps_taken = 0
        try:
            outputs = self._workflow(workflow_id, ctx.inputs, ctx, trace, set())
        except WorkflowFailed as exc:
            return RunResult(False, {}, trace, ctx.warnings, str(exc), exc.step)
        return RunResult(True, outputs, trace, ctx.warnings)

    def check_inputs(self, workflow_id: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Validate (and coerce command-line strings to) the workflow's input schema; InvalidInputs if they fail."""
        workflow = self.document.workflow(workflow_id)
        schema = workflow.get("inputs")
        if not schema:
            return inputs
        schema = self._component(schema)
        inputs = _coerce(inputs, schema)
        validator = jsonschema.Draft202012Validator(schema)
        errors = sorted(validator.iter_errors({k: (str(v) if isinstance(v, FileInput) else v)
                                               for k, v in inputs.items()}), key=lambda e: list(e.path))
        if errors:
            raise InvalidInputs("; ".join(f"{'.'.join(map(str, e.path)) or 'inputs'}: {e.message}" for e in errors))
        return inputs

    def _component(self, node: Any) -> Any:
        if isinstance(node, dict) and "$ref" in node and str(node["$ref"]).startswith("#/components/"):
            value: Any = self.document.components
            for part in node["$ref"][len("#/components/"):].split("/"):
                value = value[part]
            return value
        return node

    # -- workflows -----------------------------------------------------------------------------------------------------
    def _workflow(self, workflow_id: str, inputs: dict[str, Any], parent: Context, trace: list[TraceEntry],
                  running: set[str]) -> dict[str, Any]:
        if workflow_id in running:
            raise WorkflowFailed(f"workflow {workflow_id!r} depends on itself")
        workflow = self.document.workflow(workflow_id)
        try:
            inputs = self.check_inputs(workflow_id, inputs)
        except InvalidInputs as exc:
            raise WorkflowFailed(f"inputs of workflow {workflow_id!r}: {exc}") from None
        for dependency in workflow.get("dependsOn") or []:
            dep_id = dependency.rsplit(".", 1)[-1]
            if dep_id not in parent.workflows:
                self._workflow(dep_id, inputs, parent, trace, running | {workflow_id})
        ctx = Context(inputs=inputs, steps={}, workflows=parent.workflows, outputs={},
                      source_descriptions=parent.source_descriptions, components=parent.components,
                      warnings=parent.warnings, strict=parent.strict)
        steps = workflow["steps"]
        index = 0
        retries: dict[tuple[str, str], int] = {}
        previous: str | None = None
        while index < len(steps):
            step = steps[index]
            step_id = step["stepId"]
            self._steps_taken += 1
            if self._steps_taken > self.max_steps:
                raise WorkflowFailed(f"the step budget of {self.max_steps} steps is used up (a loop that never ends?)",
                                     step_id)
            if previous == step_id:
                time.sleep(self.poll_interval_s)  # a step repeating itself is a poll: pace it
            previous = step_id
            outcome = self._step(workflow, step, ctx, trace, running | {workflow_id})
            kind, target = outcome
            if kind == "next":
                index += 1
            elif kind == "end":
                break
            elif kind == "goto-step":
                index = next(i for i, s in enumerate(steps) if s["stepId"] == target)
            elif kind == "goto-workflow":  # the rest of this workflow is abandoned
                self._workflow(target, ctx.inputs, ctx, trace, running | {workflow_id})
                break
            elif kind == "retry":
                key = (step_id, target)
                retries[key] = retries.get(key, 0) + 1
        outputs = {name: self._value(expression, ctx, f"workflow output {name!r}", absent_is_null=True)
                   for name, expression in (workflow.get("outputs") or {}).items()}
        ctx.outputs = outputs
        parent.workflows[workflow_id] = {"inputs": inputs, "outputs": outputs}
        return outputs

    def _value(self, expression: Any, ctx: Context, what: str, *, absent_is_null: bool = False) -> Any:
        try:
            return render(expression, ctx)
        except MissingValue as exc:
            if not absent_is_null:
                raise WorkflowFailed(f"{what}: {exc}") from None
            ctx.warnings.append(f"{what} is null: {exc}")
            return None
        except ExpressionError as exc:
            raise WorkflowFailed(f"{what}: {exc}") from None

    # -- steps -----------------------------------------------------------------------------------------------------------
    def _step(self, workflow: dict[str, Any], step: dict[str, Any], ctx: Context, trace: list[TraceEntry],
              running: set[str]) -> tuple[str, str | None]:
        step_id = step["stepId"]
        attempts = 0
        while True:
            started = time.monotonic()
            sub_outputs = None
            if "workflowId" in step:
                ok, request_info, sub_outputs = self._sub_workflow(step, ctx, trace, running)
                response_info: dict[str, Any] = {"outputs": _printable(sub_outputs)}
                retry_after_header = None
            else:
                request_info, response_info, retry_after_header = self._call(workflow, step, ctx)
                ok = all(self._criterion(c, ctx, step_id) for c in step.get("successCriteria") or [])
            if ok:
                saved, ctx.outputs = ctx.outputs, (sub_outputs if sub_outputs is not None else ctx.outputs)
                try:  # a workflow step's outputs read the sub-workflow's outputs as $outputs
                    outputs = {name: self._value(expr, ctx, f"step {step_id!r} output {name!r}", absent_is_null=True)
                               for name, expr in (step.get("outputs") or {}).items()}
                finally:
                    ctx.outputs = saved
                ctx.steps[step_id] = {"outputs": outputs}
                action = self._choose(step.get("onSuccess"), workflow.get("successActions"), ctx, step_id)
            else:
                ctx.steps.setdefault(step_id, {"outputs": {}})
                action = self._choose(step.get("onFailure"), workflow.get("failureActions"), ctx, step_id)
            label = (action or {}).get("type", "next" if ok else "fail")
            entry = TraceEntry(workflow["workflowId"], step_id, request_info, response_info, ok,
                               f"{label}" + (f" {action.get('name')}" if action and action.get("name") else ""),
                               round(time.monotonic() - started, 3))
            trace.append(entry)
            if self.on_step:
                self.on_step(entry)
            if action is None:
                if ok:
                    return ("next", None)
                raise WorkflowFailed(f"step {step_id!r} failed its success criteria", step_id)
            kind = action.get("type")
            if kind == "end":
                if ok:
                    return ("end", None)
                raise WorkflowFailed(f"step {step_id!r} failed and its failure action {action.get('name')!r} ends "
                                     "the workflow", step_id)
            if kind == "goto":
                if action.get("workflowId"):
                    return ("goto-workflow", action["workflowId"].rsplit(".", 1)[-1])
                return ("goto-step", action["stepId"])
            if kind == "retry":
                attempts += 1
                limit = int(action.get("retryLimit", 1))
                if attempts > limit:
                    raise WorkflowFailed(f"step {step_id!r} still failed after {limit} retries", step_id)
                wait = float(action.get("retryAfter", 0) or 0)
                if retry_after_header is not None:
                    wait = retry_after_header  # the server knows best
                time.sleep(max(wait, 0))
                self._steps_taken += 1
                if self._steps_taken > self.max_steps:
                    raise WorkflowFailed(f"the step budget of {self.max_steps} steps is used up", step_id)
                continue
            raise WorkflowFailed(f"step {step_id!r}: unknown action type {kind!r}", step_id)

    def _choose(self, actions: list[Any] | None, workflow_actions: list[Any] | None, ctx: Context,
                step_id: str) -> dict[str, Any] | None:
        """The first action whose criteria all hold; step actions first, then the workflow's."""
        for action in [*(actions or []), *(workflow_actions or [])]:
            action = self._reusable(action)
            if all(self._criterion(c, ctx, step_id) for c in action.get("criteria") or []):
                return action
        return None

    def _reusable(self, item: Any) -> Any:
        """`{reference: $components.parameters.x, value?: ...}` -> the component, with `value` overriding."""
        if isinstance(item, dict) and "reference" in item:
            reference = str(item["reference"])
            if not reference.startswith("$components."):
                raise WorkflowFailed(f"reference {reference!r} must point into components")
            value: Any = self.document.components
            for part in reference[len("$components."):].split("."):
                if not isinstance(value, dict) or part not in value:
                    raise WorkflowFailed(f"reference {reference!r} does not exist")
                value = value[part]
            return {**value, **({"value": item["value"]} if "value" in item else {})}
        return item

    def _criterion(self, criterion: dict[str, Any], ctx: Context, step_id: str) -> bool:
        try:
            return criteria.check(criterion, ctx)
        except criteria.CriterionError as exc:
            raise WorkflowFailed(f"step {step_id!r}: {exc}", step_id) from None

    def _sub_workflow(self, step: dict[str, Any], ctx: Context, trace: list[TraceEntry],
                      running: set[str]) -> tuple[bool, dict[str, Any], dict[str, Any] | None]:
        """Run the step's workflow with its parameters as inputs: (criteria hold, what was asked, its outputs)."""
        workflow_id = step["workflowId"].rsplit(".", 1)[-1]
        inputs = {p["name"]: self._value(p.get("value"), ctx, f"parameter {p['name']!r}")
                  for p in (self._reusable(p) for p in step.get("parameters") or [])}
        asked = {"workflow": workflow_id, "inputs": _printable(inputs)}
        try:
            outputs = self._workflow(workflow_id, inputs, ctx, trace, running)
        except WorkflowFailed:
            return False, asked, None
        saved, ctx.outputs = ctx.outputs, outputs
        try:
            ok = all(self._criterion(c, ctx, step["stepId"]) for c in step.get("successCriteria") or [])
        finally:
            ctx.outputs = saved
        ctx.exchange = Exchange(response_body=outputs)
        return ok, asked, outputs

    # -- HTTP ------------------------------------------------------------------------------------------------------------
    def _operation(self, step: dict[str, Any]) -> Operation:
        try:
            if "operationId" in step:
                return self.document.operation_by_id(step["operationId"])
            return self.document.operation_by_path(step["operationPath"])
        except DocumentError as exc:
            raise WorkflowFailed(str(exc), step["stepId"]) from None

    def _parameters(self, workflow: dict[str, Any], step: dict[str, Any]) -> list[dict[str, Any]]:
        """Workflow-level parameters, overridden by the step's own with the same name and location."""
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for p in [*(workflow.get("parameters") or []), *(step.get("parameters") or [])]:
            p = self._reusable(p)
            where = p.get("in", "query")
            key = (p["name"].lower() if where == "header" else p["name"], where)
            merged[key] = p
        return list(merged.values())

    def _call(self, workflow: dict[str, Any], step: dict[str, Any], ctx: Context) -> tuple[dict, dict, float | None]:
        step_id = step["stepId"]
        operation = self._operation(step)
        source = operation.document
        path_values: dict[str, Any] = {}
        query: dict[str, Any] = {}
        headers: dict[str, str] = dict(self.headers.get(source.name, {}))
        cookies: dict[str, str] = {}
        for p in self._parameters(workflow, step):
            value = self._value(p.get("value"), ctx, f"step {step_id!r} parameter {p['name']!r}")
            where = p.get("in", "query")
            if where == "path":
                path_values[p["name"]] = value
            elif where == "query":
                query[p["name"]] = value
            elif where == "header":
                headers[p["name"]] = _scalar(value)
            elif where == "cookie":
                cookies[p["name"]] = _scalar(value)
            else:
                raise WorkflowFailed(f"step {step_id!r}: parameter {p['name']!r} has an unknown location {where!r}",
                                     step_id)
        path = operation.path.split("#", 1)[0]  # `/#CreateModel`: the fragment names the operation, it is not sent
        for name, value in path_values.items():
            path = path.replace("{" + name + "}", httpx.URL(f"/{_scalar(value)}").raw_path.decode()[1:])
        if "{" in path:
            raise WorkflowFailed(f"step {step_id!r}: path parameters missing for {operation.path!r}", step_id)
        base = base_url(source, self.servers.get(source.name), self.server_variables)
        # A bare "/" on a base with a path prefix means the prefix itself (`POST /prefix`, as AWS clients send).
        url = base if path == "/" and urlsplit(base).path not in ("", "/") else base + path
        content, content_type, request_body = self._body(step, operation, ctx)
        if content_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = content_type
        if cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        method = operation.method.upper()
        full_url = url + (("?" + urlencode(query, doseq=True)) if query else "")
        if self._needs_signature(source, operation.spec):
            headers = self._sign(method, full_url, headers, content, source)
        ctx.exchange = Exchange(url=full_url, method=method, request_headers=headers, request_query=query,
                                request_path=path_values, request_body=request_body)
        request_info = {"method": method, "url": full_url, "headers": _redacted(headers),
                        "body": _excerpt(request_body)}
        try:
            response = self.client.request(method, full_url, headers=headers, content=content)
        except httpx.HTTPError as exc:
            raise WorkflowFailed(f"step {step_id!r}: {method} {full_url} failed: {exc}", step_id) from None
        body = _decode(response)
        ctx.exchange.status = response.status_code
        ctx.exchange.response_headers = dict(response.headers)
        ctx.exchange.response_body = body
        retry_after = response.headers.get("retry-after")
        wait = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
        return request_info, {"status": response.status_code, "headers": dict(response.headers),
                              "body": _excerpt(body)}, wait

    def _body(self, step: dict[str, Any], operation: Operation, ctx: Context) -> tuple[bytes | None, str | None, Any]:
        body = step.get("requestBody")
        if not body:
            return None, None, None
        declared = list(((operation.spec.get("requestBody") or {}).get("content") or {}).keys())
        content_type = body.get("contentType") or (declared[0] if declared else "application/json")
        payload = self._value(body.get("payload"), ctx, f"step {step['stepId']!r} payload")
        for replacement in body.get("replacements") or []:
            value = self._value(replacement.get("value"), ctx, "replacement value")
            payload = _set_pointer(payload, replacement["target"], value)
        kind = content_type.split(";", 1)[0].strip().lower()
        if is_json(content_type):
            if isinstance(payload, FileInput):
                return payload.read(), content_type, payload.text()
            if isinstance(payload, str) and _looks_like_json(payload):  # a JSON document written as text
                return payload.encode(), content_type, payload
            return json.dumps(payload).encode(), content_type, payload
        if kind == "application/x-www-form-urlencoded":
            if isinstance(payload, dict):
                return urlencode({k: _scalar(v) for k, v in payload.items()}, doseq=True).encode(), content_type, payload
            return str(payload).encode(), content_type, payload
        if kind == "multipart/form-data":
            if not isinstance(payload, dict):
                raise WorkflowFailed(f"step {step['stepId']!r}: a multipart payload must be an object of fields")
            files = []
            for name, value in payload.items():
                if isinstance(value, FileInput):
                    files.append((name, (value.name, value.read(), "application/octet-stream")))
                else:
                    files.append((name, (None, _scalar(value).encode(), None)))
            request = httpx.Request("POST", "http://multipart.invalid/", files=files)
            return request.read(), request.headers["content-type"], {k: str(v) for k, v in payload.items()}
        if isinstance(payload, FileInput):
            return payload.read(), content_type, str(payload)
        if isinstance(payload, bytes):
            return payload, content_type, "<bytes>"
        return _scalar(payload).encode(), content_type, payload

    # -- AWS Signature Version 4 -------------------------------------------------------------------------------------
    def _needs_signature(self, source: Any, operation: dict[str, Any]) -> bool:
        """Sign when the operation's security (or the document's, for an operation without one) names a SigV4
        scheme, or when the source is served from amazonaws.com. A document may mix schemes: modelport's signs
        only its SageMaker operations."""
        if self.sign_sources is not None:
            return source.name in self.sign_sources
        servers = " ".join(str(s.get("url", "")) for s in source.servers)
        schemes = (source.content.get("components") or {}).get("securitySchemes") or {}
        requirements = operation.get("security", source.content.get("security"))
        if requirements is None:
            return "amazonaws.com" in servers or "sigv4" in json.dumps(schemes).lower()
        named = {name for requirement in requirements for name in requirement}
        return "amazonaws.com" in servers or any("sigv4" in f"{name} {json.dumps(schemes.get(name))}".lower()
                                                 for name in named)

    def _sign(self, method: str, url: str, headers: dict[str, str], body: bytes | None, source: Any) -> dict[str, str]:
        import botocore.session
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        session = botocore.session.Session(profile=self.aws_profile)
        credentials = session.get_credentials()
        if credentials is None:
            raise WorkflowFailed(f"source {source.name!r} needs AWS credentials: set AWS_ACCESS_KEY_ID and "
                                 "AWS_SECRET_ACCESS_KEY, or pass --aws-profile")
        original = str(source.servers[0].get("url", ""))
        service = _aws_service(original) or "execute-api"
        region = (self.server_variables.get("region") or session.get_config_variable("region")
                  or ((source.servers[0].get("variables") or {}).get("region") or {}).get("default") or "us-east-1")
        request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers))
        SigV4Auth(credentials, service, region).add_auth(request)
        return dict(request.headers.items())


def _aws_service(url: str) -> str | None:
    host = urlsplit(url.replace("{", "").replace("}", "")).hostname or ""
    parts = host.split(".")
    if "amazonaws" in parts:
        for candidate in parts:
            if candidate not in ("api", "runtime", "amazonaws", "com", "region") and not candidate.startswith("us-"):
                return candidate
    return None


def _coerce(inputs: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Command-line inputs arrive as strings: give them the schema's type where that is unambiguous."""
    properties = schema.get("properties") or {}
    result = dict(inputs)
    for name, value in inputs.items():
        kind = (properties.get(name) or {}).get("type")
        if not isinstance(value, str):
            continue
        try:
            if kind == "integer":
                result[name] = int(value)
            elif kind == "number":
                result[name] = float(value)
            elif kind == "boolean" and value.lower() in ("true", "false"):
                result[name] = value.lower() == "true"
            elif kind in ("object", "array"):
                result[name] = json.loads(value)
        except ValueError:
            pass
    return result


def _set_pointer(document: Any, pointer: str, value: Any) -> Any:
    import copy

    document = copy.deepcopy(document)
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")] if pointer else []
    if not parts:
        return value
    node = document
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        if last == "-":
            node.append(value)
        else:
            node[int(last)] = value
    else:
        node[last] = value
    return document


def _looks_like_json(text: str) -> bool:
    stripped = text.strip()
    return bool(stripped) and stripped[0] in "{[" and stripped[-1] in "}]"


def _decode(response: httpx.Response) -> Any:
    content_type = response.headers.get("content-type", "")
    if not response.content:
        return None
    if is_json(content_type) or not content_type:
        try:
            return response.json()
        except ValueError:
            return response.text
    if "xml" in content_type or content_type.startswith("text/"):
        return response.text
    return response.content


def _redacted(headers: dict[str, str]) -> dict[str, str]:
    return {k: ("<redacted>" if k.lower() in ("authorization", "x-amz-security-token", "cookie") else v)
            for k, v in headers.items()}


def _excerpt(body: Any, limit: int = 2000) -> Any:
    if isinstance(body, bytes):
        return f"<{len(body)} bytes>"
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return body if len(text) <= limit else text[:limit] + "..."


def _printable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
