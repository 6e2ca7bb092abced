"""Arazzo runner conformance: expressions, criteria, actions, retries, limits, request building, CLI exit codes.
A small HTTP server inside this test plays the API (the runner is client-side: any OpenAPI-described API)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from modelport.workflows import DocumentError, WorkflowRunner, load
from modelport.workflows.files import FileInput
from modelport.workflows.runner import InvalidInputs


class Api(BaseHTTPRequestHandler):
    polls: dict[str, int] = {}
    flaky: dict[str, int] = {}
    seen: list[dict] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, status: int, body, content_type: str = "application/json", headers: dict | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        record = {"method": self.command, "path": url.path, "query": parse_qs(url.query),
                  "headers": {k.lower(): v for k, v in self.headers.items()}, "body": raw.decode("latin-1")}
        Api.seen.append(record)
        parts = url.path.strip("/").split("/")
        if parts[0] == "base":  # a server URL with a path prefix
            parts = parts[1:]
        parts = [p for p in parts if p] or ["echo"]  # the bare base path (fragment operations) echoes
        if parts[0] == "items" and self.command == "POST":
            payload = json.loads(raw or b"{}")
            return self._reply(201, {"id": 7, "name": payload.get("name"), "tags": payload.get("tags")},
                               headers={"X-Item": "seven"})
        if parts[0] == "items" and len(parts) == 2:
            return self._reply(200, {"id": int(parts[1]), "name": "widget"}) if parts[1] == "7" else \
                self._reply(404, {"message": "no such item"})
        if parts[0] == "poll":
            Api.polls[parts[1]] = Api.polls.get(parts[1], 0) + 1
            done = Api.polls[parts[1]] >= 3
            return self._reply(200, {"Status": "Done" if done else "Pending", "count": Api.polls[parts[1]]},
                               content_type="application/x-amz-json-1.1")
        if parts[0] == "flaky":
            Api.flaky[parts[1]] = Api.flaky.get(parts[1], 0) + 1
            if Api.flaky[parts[1]] <= 2:
                return self._reply(503, {"message": "busy"}, headers={"Retry-After": "0"})
            return self._reply(200, {"ok": True})
        if parts[0] == "xml":
            return self._reply(200, b"<status><state>ready</state></status>", content_type="application/xml")
        if parts[0] == "echo":
            return self._reply(200, record)
        return self._reply(404, {"message": "unknown route"})

    do_GET = do_POST = do_PUT = do_DELETE = _handle


@pytest.fixture(scope="module")
def api() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


OPENAPI = {
    "openapi": "3.1.0", "info": {"title": "test api", "version": "1"},
    "servers": [{"url": "https://example.invalid/{stage}", "variables": {"stage": {"default": "v1"}}}],
    "components": {"parameters": {"Trace": {"name": "X-Trace", "in": "header", "schema": {"type": "string"}}}},
    "paths": {
        "/items": {"post": {"operationId": "createItem",
                            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}}},
        "/items/{id}": {"get": {"operationId": "getItem"}},
        "/poll/{key}": {"get": {"operationId": "poll"}},
        "/flaky/{key}": {"get": {"operationId": "flaky"}},
        "/xml": {"get": {"operationId": "xml"}},
        "/echo": {"post": {"operationId": "echo"}, "get": {"operationId": "echoGet"}},
        "/#Fragment": {"post": {"operationId": "fragment"}},
    },
}


def document(tmp_path: Path, workflows: list[dict], **extra) -> Path:
    (tmp_path / "api.yaml").write_text(yaml.safe_dump(OPENAPI))
    doc = {"arazzo": "1.0.1", "info": {"title": "t", "version": "1"},
           "sourceDescriptions": [{"name": "api", "url": "api.yaml", "type": "openapi"}], "workflows": workflows,
           **extra}
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def runner(path: Path, api: str, **options) -> WorkflowRunner:
    return WorkflowRunner(load(path, strict=options.pop("strict", False)), servers={"api": api},
                          poll_interval_s=0, **options)


def test_outputs_chain_and_expressions_keep_their_type(tmp_path, api) -> None:
    path = document(tmp_path, [{
        "workflowId": "w", "inputs": {"type": "object", "required": ["name"],
                                      "properties": {"name": {"type": "string"}, "count": {"type": "integer"}}},
        "steps": [
            {"stepId": "create", "operationId": "createItem",
             "requestBody": {"payload": {"name": "$inputs.name", "tags": ["a", "{$inputs.name}-tag"]}},
             "successCriteria": [{"condition": "$statusCode == 201"}],
             "outputs": {"id": "$response.body#/id", "header": "$response.header.x-item",
                         "sent": "$request.body#/tags/1", "url": "$url", "method": "$method"}},
            {"stepId": "get", "operationPath": "{$sourceDescriptions.api.url}#/paths/~1items~1{id}/get",
             "parameters": [{"name": "id", "in": "path", "value": "$steps.create.outputs.id"}],
             "successCriteria": [{"condition": "$statusCode == 200 && $response.body#/name == 'WIDGET'"}],
             "outputs": {"name": "$response.body#/name"}},
        ],
        "outputs": {"id": "$steps.create.outputs.id", "name": "$steps.get.outputs.name",
                    "header": "$steps.create.outputs.header", "sent": "$steps.create.outputs.sent",
                    "text": "item {$steps.create.outputs.id} is {$steps.get.outputs.name}"}}])
    result = runner(path, api).run("w", {"name": "gizmo", "count": "3"})
    assert result.ok, result.error
    assert result.outputs == {"id": 7, "name": "widget", "header": "seven", "sent": "gizmo-tag",
                              "text": "item 7 is widget"}
    assert [e.step for e in result.trace] == ["create", "get"]


@pytest.mark.parametrize("condition, expected", [
    ("$statusCode == 200", True), ("$statusCode != 200", False), ("$statusCode >= 200 && $statusCode < 300", True),
    ("!($statusCode == 404) || false", True), ("$response.body#/name == 'Widget'", True),
    ("$response.body#/id > 6.5", True), ("$response.body#/missing == null", True),
    ("($statusCode == 500 || $statusCode == 200) && !false", True), ("'it''s' == 'IT''S'", True),
])
def test_simple_conditions(tmp_path, api, condition, expected) -> None:
    path = document(tmp_path, [{"workflowId": "w", "steps": [{
        "stepId": "s", "operationId": "getItem", "parameters": [{"name": "id", "in": "path", "value": 7}],
        "successCriteria": [{"condition": condition}]}]}])
    assert runner(path, api).run("w").ok is expected


def test_regex_jsonpath_xpath_and_the_lenient_comparison(tmp_path, api) -> None:
    path = document(tmp_path, [{"workflowId": "w", "steps": [
        {"stepId": "get", "operationId": "getItem", "parameters": [{"name": "id", "in": "path", "value": 7}],
         "successCriteria": [
             {"context": "$response.body", "condition": "^.*widget.*$", "type": "regex"},
             {"context": "$response.body", "condition": "$[?@ == 'widget']", "type": "jsonpath"},
             {"context": "$response.body", "condition": "$.name",
              "type": {"type": "jsonpath", "version": "draft-goessner-dispatch-jsonpath-00"}},
             {"context": "$response.body", "condition": "$.name == \"WIDGET\"", "type": "jsonpath"}]},
        {"stepId": "xml", "operationId": "xml",
         "successCriteria": [{"context": "$response.body", "condition": "/status/state[text()='ready']",
                              "type": "xpath"}]}]}])
    result = runner(path, api).run("w")
    assert result.ok, result.error
    assert any("not an RFC 9535 query" in w for w in result.warnings)
    with pytest.raises(DocumentError):
        load(path, strict=True)


def test_rfc9535_filters_select_children_not_the_object_itself(tmp_path, api) -> None:
    path = document(tmp_path, [{"workflowId": "w", "steps": [{
        "stepId": "get", "operationId": "getItem", "parameters": [{"name": "id", "in": "path", "value": 7}],
        "successCriteria": [{"context": "$response.body", "condition": "$[?@.name == 'widget']", "type": "jsonpath"}]}]}])
    assert runner(path, api).run("w").ok is False  # strict RFC 9535: the filter looks at the children


def test_goto_poll_loop_ends_when_done_and_is_bounded(tmp_path, api) -> None:
    steps = [{"stepId": "poll", "operationId": "poll", "parameters": [{"name": "key", "in": "path",
                                                                        "value": "$inputs.key"}],
              "successCriteria": [{"condition": "$statusCode == 200"}],
              "outputs": {"count": "$response.body#/count"},
              "onSuccess": [
                  {"name": "again", "type": "goto", "stepId": "poll",
                   "criteria": [{"context": "$response.body", "condition": "$.Status == \"Pending\"", "type": "jsonpath"}]},
                  {"name": "done", "type": "end"}]},
             {"stepId": "never", "operationId": "getItem", "parameters": [{"name": "id", "in": "path", "value": 1}]}]
    path = document(tmp_path, [{"workflowId": "w", "inputs": {"type": "object", "properties": {"key": {"type": "string"}}},
                                "steps": steps, "outputs": {"count": "$steps.poll.outputs.count"}}])
    result = runner(path, api).run("w", {"key": "a"})
    assert result.ok and result.outputs == {"count": 3} and len(result.trace) == 3
    bounded = runner(path, api, max_steps=2).run("w", {"key": "b"})
    assert not bounded.ok and "step budget" in bounded.error


def test_retry_honours_limit_and_retry_after(tmp_path, api) -> None:
    def flow(limit: int) -> Path:
        return document(tmp_path, [{"workflowId": "w", "steps": [{
            "stepId": "flaky", "operationId": "flaky", "parameters": [{"name": "key", "in": "path",
                                                                        "value": f"k{limit}"}],
            "successCriteria": [{"condition": "$statusCode == 200"}],
            "onFailure": [{"name": "again", "type": "retry", "retryAfter": 30, "retryLimit": limit,
                           "criteria": [{"condition": "$statusCode == 503"}]}]}]}])

    import time

    started = time.monotonic()
    assert runner(flow(2), api).run("w").ok  # two 503s, then 200; Retry-After: 0 overrides retryAfter 30
    assert time.monotonic() - started < 10
    failed = runner(flow(1), api).run("w")
    assert not failed.ok and "retries" in failed.error


def test_failure_without_actions_fails_the_workflow_and_failure_goto_recovers(tmp_path, api) -> None:
    path = document(tmp_path, [{"workflowId": "w", "steps": [
        {"stepId": "missing", "operationId": "getItem", "parameters": [{"name": "id", "in": "path", "value": 99}],
         "successCriteria": [{"condition": "$statusCode == 200"}],
         "onFailure": [{"name": "create", "type": "goto", "stepId": "create", "criteria": [{"condition": "$statusCode == 404"}]}]},
        {"stepId": "skipped", "operationId": "getItem", "parameters": [{"name": "id", "in": "path", "value": 1}]},
        {"stepId": "create", "operationId": "createItem", "requestBody": {"payload": {"name": "x"}},
         "successCriteria": [{"condition": "$statusCode == 201"}]}]},
        {"workflowId": "plain", "steps": [
            {"stepId": "missing", "operationId": "getItem", "parameters": [{"name": "id", "in": "path", "value": 99}],
             "successCriteria": [{"condition": "$statusCode == 200"}]}]}])
    result = runner(path, api).run("w")
    assert result.ok and [e.step for e in result.trace] == ["missing", "create"]
    failed = runner(path, api).run("plain")
    assert not failed.ok and failed.failed_step == "missing"


def test_parameters_bodies_and_replacements(tmp_path, api) -> None:
    upload = tmp_path / "bundle.zip"
    upload.write_bytes(b"PK-fake-bytes")
    path = document(tmp_path, [{"workflowId": "w", "parameters": [{"name": "X-Workflow", "in": "header", "value": "wf"}],
        "inputs": {"type": "object", "properties": {"file": {"type": "string"}}},
        "steps": [
            {"stepId": "json", "operationId": "echo",
             "parameters": [{"name": "q", "in": "query", "value": "a b"}, {"name": "session", "in": "cookie", "value": "s1"},
                            {"reference": "$components.parameters.trace", "value": "t-1"},
                            {"name": "x-workflow", "in": "header", "value": "step-wins"}],
             "requestBody": {"contentType": "application/x-amz-json-1.1", "payload": {"a": {"b": 1}},
                             "replacements": [{"target": "/a/b", "value": 2}, {"target": "/c", "value": "$statusCode"}]},
             "outputs": {"echo": "$response.body"}},
            {"stepId": "form", "operationId": "echo", "requestBody": {"contentType": "application/x-www-form-urlencoded",
                                                                     "payload": {"k": "v", "n": 1}},
             "outputs": {"echo": "$response.body"}},
            {"stepId": "multipart", "operationId": "echo", "requestBody": {"contentType": "multipart/form-data",
                                                                          "payload": {"file": "$inputs.file", "note": "hi"}},
             "outputs": {"echo": "$response.body"}},
            {"stepId": "raw", "operationId": "echo", "requestBody": {"contentType": "text/plain", "payload": "plain {$statusCode}"},
             "outputs": {"echo": "$response.body"}},
            {"stepId": "fragment", "operationId": "fragment", "outputs": {"echo": "$response.body"}}],
        "outputs": {"json": "$steps.json.outputs.echo", "form": "$steps.form.outputs.echo",
                    "multipart": "$steps.multipart.outputs.echo", "raw": "$steps.raw.outputs.echo",
                    "fragment": "$steps.fragment.outputs.echo"}}],
        components={"parameters": {"trace": {"name": "X-Trace", "in": "header", "value": "default"}}})
    result = runner(path, api + "/base").run("w", {"file": FileInput(upload)})
    assert result.ok, result.error
    out = result.outputs
    assert json.loads(out["json"]["body"]) == {"a": {"b": 2}, "c": None}
    assert out["json"]["query"] == {"q": ["a b"]} and out["json"]["headers"]["cookie"] == "session=s1"
    assert out["json"]["headers"]["x-trace"] == "t-1" and out["json"]["headers"]["x-workflow"] == "step-wins"
    assert out["json"]["headers"]["content-type"] == "application/x-amz-json-1.1"
    assert out["form"]["body"] == "k=v&n=1"
    assert 'filename="bundle.zip"' in out["multipart"]["body"] and "PK-fake-bytes" in out["multipart"]["body"]
    assert out["multipart"]["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert out["raw"]["body"] == "plain 200"
    assert out["fragment"]["path"] == "/base"  # "/#Fragment" posts to the base path, fragment not sent


def test_sub_workflows_depends_on_and_inputs(tmp_path, api) -> None:
    path = document(tmp_path, [
        {"workflowId": "make", "inputs": {"type": "object", "properties": {"name": {"type": "string"}}},
         "steps": [{"stepId": "create", "operationId": "createItem", "requestBody": {"payload": {"name": "$inputs.name"}},
                    "successCriteria": [{"condition": "$statusCode == 201"}], "outputs": {"id": "$response.body#/id"}}],
         "outputs": {"id": "$steps.create.outputs.id"}},
        {"workflowId": "main", "dependsOn": ["make"], "inputs": {"type": "object", "required": ["name"],
                                                                 "properties": {"name": {"type": "string"}}},
         "steps": [{"stepId": "again", "workflowId": "make", "parameters": [{"name": "name", "value": "other"}],
                    "outputs": {"id": "$outputs.id"}},
                   {"stepId": "get", "operationId": "getItem",
                    "parameters": [{"name": "id", "in": "path", "value": "$workflows.make.outputs.id"}],
                    "successCriteria": [{"condition": "$statusCode == 200"}]}],
         "outputs": {"first": "$workflows.make.inputs.name", "id": "$steps.again.outputs.id"}}])
    result = runner(path, api).run("main", {"name": "first"})
    assert result.ok, result.error
    assert result.outputs == {"first": "other", "id": 7}
    with pytest.raises(InvalidInputs):
        runner(path, api).check_inputs("main", {})


def test_invalid_documents_are_refused(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"arazzo": "2.0.0", "info": {}, "sourceDescriptions": [], "workflows": []}))
    with pytest.raises(DocumentError) as error:
        load(bad)
    assert len(error.value.problems) >= 3
    path = document(tmp_path, [{"workflowId": "w", "steps": [{"stepId": "s", "operationId": "nope"}]}])
    with pytest.raises(DocumentError, match="nope"):
        load(path)


def test_sigv4_signs_aws_sources(tmp_path, api, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    aws = {**OPENAPI, "servers": [{"url": "https://api.sagemaker.{region}.amazonaws.com",
                                   "variables": {"region": {"default": "eu-west-1"}}}]}
    (tmp_path / "aws.yaml").write_text(yaml.safe_dump(aws))
    doc = {"arazzo": "1.0.0", "info": {"title": "t", "version": "1"},
           "sourceDescriptions": [{"name": "aws", "url": "aws.yaml"}],
           "workflows": [{"workflowId": "w", "steps": [{"stepId": "s", "operationId": "fragment",
                                                        "requestBody": {"contentType": "application/x-amz-json-1.1",
                                                                        "payload": {"A": 1}},
                                                        "outputs": {"auth": "$response.body#/headers/authorization"}}],
                          "outputs": {"auth": "$steps.s.outputs.auth"}}]}
    (tmp_path / "aws-flow.yaml").write_text(yaml.safe_dump(doc))
    result = WorkflowRunner(load(tmp_path / "aws-flow.yaml"), servers={"aws": api}).run("w")
    assert result.ok, result.error
    assert result.outputs["auth"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/sagemaker/aws4_request" in result.outputs["auth"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelport.cli", "workflow", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "200"})


def test_cli_exit_codes_and_json(tmp_path, api) -> None:
    path = document(tmp_path, [{"workflowId": "w", "inputs": {"type": "object", "required": ["id"],
                                                              "properties": {"id": {"type": "integer"}}},
        "steps": [{"stepId": "get", "operationId": "getItem", "parameters": [{"name": "id", "in": "path",
                                                                              "value": "$inputs.id"}],
                   "successCriteria": [{"condition": "$statusCode == 200"}], "outputs": {"name": "$response.body#/name"}}],
        "outputs": {"name": "$steps.get.outputs.name"}}])
    ok = cli("run", str(path), "--server", f"api={api}", "--input", "id=7", "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["outputs"] == {"name": "widget"}
    failed = cli("run", str(path), "--server", f"api={api}", "--input", "id=5")
    assert failed.returncode == 1
    assert "workflow failed at step get" in failed.stdout and '"status": 404' in failed.stdout
    assert "no such item" in failed.stdout  # the failing step's response is shown
    assert cli("run", str(path), "--server", f"api={api}").returncode == 2  # missing input
    assert cli("run", str(path), "--server", f"nope={api}", "--input", "id=7").returncode == 2
    assert cli("validate", str(tmp_path / "missing.yaml")).returncode != 0
    assert cli("list", str(path)).returncode == 0


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "workflows"


def test_committed_openapi_document_is_current() -> None:
    from modelport.api.app import create_app, openapi_document
    from modelport.settings import Settings

    live = json.loads(json.dumps(openapi_document(create_app(Settings()).fastapi_app), sort_keys=True))
    committed = json.loads((EXAMPLE / "modelport-openapi.json").read_text())
    assert committed == live, "regenerate it: modelport openapi -o examples/workflows/modelport-openapi.json"


@pytest.mark.database
def test_example_workflow_deploys_infers_and_undeploys(server, model_dir) -> None:
    from tests.support import SEED_DENSE_INPUT, build_ccfraud_onnx

    model = build_ccfraud_onnx(model_dir / "workflow.onnx")
    inputs = {"token": server.token, "workspaceName": "arazzo-example", "modelName": "arazzo-ccfraud",
              "framework": "onnx", "pipelineName": "arazzo-pipeline", "record": {"dense_input": SEED_DENSE_INPUT}}
    inputs_file = model_dir / "inputs.json"
    inputs_file.write_text(json.dumps(inputs))
    result = cli("run", str(EXAMPLE / "wallaroo-deploy-and-infer.arazzo.yaml"), "--server", f"modelport={server.url}",
                 "--inputs-file", str(inputs_file), "--input", f"modelFile=@{model}", "--poll-interval", "0.2", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    outputs = json.loads(result.stdout)["outputs"]
    assert len(outputs["out"]["dense_1"]) == 1 and outputs["replica"].startswith("engine-")
    status = server.post("/v1/api/status/get_deployment", {"name": outputs["deployment"]})
    assert status.status_code == 404  # undeployed by the last step
