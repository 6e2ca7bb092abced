"""modelport's OpenAPI description tells the truth: schemathesis runs every operation of the live /openapi.json
against a real server, with every check on, and fails on any 5xx, undocumented status or body that breaks its schema.

The examples in the document name the README's objects (workspace `quickstart`, model `iris`, pipeline
`iris-pipeline`, ...); this test makes them first, so an example request succeeds. Identifiers the server makes
(orchestration, task and execution ids, keys) have no predictable value: the document shows stand-ins, which the
test replaces with the live values before the run. Operations that end or disable something (delete, undeploy,
revoke, kill, disable) have objects of their own in their examples, so the others' objects survive them.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import joblib
import pytest
import requests

from modelport.api import native
from modelport.api.craftai import security as craftai
from modelport.api.dataiku import admin as dataiku_admin
from modelport.api.dataiku import errors as dataiku
from modelport.api.wallaroo import errors as wallaroo
from tests.support import Server, build_sklearn_classifier, create_pipeline, deploy, upload_model, wait_status

schemathesis = pytest.importorskip("schemathesis")

REGION = "eu-west-1"
IMAGE = "683313688378.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CRAFT_FUNCTION = "def double(x):\n    print('doubling', x)\n    return {'y': x * 2, 'report': b'doubled'}\n"
ORCHESTRATION = b"print('hello from the conformance run')\n"
MAX_EXAMPLES = 3  # generated cases per operation in the fuzzing phase; examples and coverage add theirs


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    return {name: tmp_path_factory.mktemp(name) for name in ("imports", "artifacts", "code")}


@pytest.fixture(scope="module")
def server_env(folders: dict[str, Path]) -> dict[str, str]:
    return {"MODELPORT_DATAIKU_IMPORT_ROOTS": json.dumps([str(folders["imports"])]),
            "MODELPORT_SAGEMAKER_FILE_ROOTS": json.dumps([str(folders["artifacts"])])}


def poll(what: str, probe: Callable[[], Any], timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.1)


# -- the objects the examples name ----------------------------------------------------------------------------------

def seed_wallaroo(server: Server, folder: Path) -> dict[Any, Any]:
    workspace = server.post("/v1/api/workspaces/create", {"workspace_name": wallaroo.EXAMPLE_WORKSPACE}).json()
    assert workspace == {"workspace_id": 1}
    model = upload_model(server, 1, wallaroo.EXAMPLE_MODEL, build_sklearn_classifier(folder / "iris.joblib"), "sklearn")
    pipeline = create_pipeline(server, 1, wallaroo.EXAMPLE_PIPELINE, [model])
    retired = create_pipeline(server, 1, "retired-pipeline", [model])
    assert (pipeline["pipeline_pk_id"], retired["pipeline_pk_id"]) == (1, 2)
    assert deploy(server, wallaroo.EXAMPLE_PIPELINE, pipeline) == 1
    assert deploy(server, "retired-pipeline", retired) == 2
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("main.py", ORCHESTRATION)
    reply = httpx.post(f"{server.url}/v1/api/orchestration/upload", headers=server.headers, timeout=60, files=[
        ("file", ("hello.zip", archive.getvalue(), "application/zip")),
        ("metadata", (None, json.dumps({"workspace_id": 1, "name": "hello"}), "application/json"))])
    assert reply.status_code == 202, reply.text
    orch_id = reply.json()["id"]

    def ready() -> dict | None:
        listed = server.post("/v1/api/orchestration/list", {"workspace_id": 1}).json()
        found = next(o for o in listed if o["id"] == orch_id)
        assert found["status"] != "error", found
        return found if found["status"] == "ready" else None

    orchestration = poll("orchestration packaging", ready)
    task = server.post("/v1/api/task/run_once", {"workspace_id": 1, "orch_id": orch_id}).json()["id"]
    runs = poll("a finished run", lambda: [r for r in server.post("/v1/api/task/list_task_runs",
                                                                      {"task_id": task}).json()
                                            if r["status"] in ("success", "failure")])
    doomed = server.post("/v1/api/task/run_scheduled", {"workspace_id": 1, "orch_id": orch_id,
                                                         "schedule": "0 0 1 1 *"}).json()["id"]
    wait_status(server, "iris-pipeline-1")
    wait_status(server, "retired-pipeline-2")
    version = server.post("/v1/api/pipelines/get_pipeline_by_name",
                          {"pipeline_name": wallaroo.EXAMPLE_PIPELINE}).json()["pipeline"]["pipeline_versions"][0]
    return {wallaroo.EXAMPLE_PIPELINE_VERSION: version["version"], wallaroo.EXAMPLE_ORCHESTRATION: orch_id,
            wallaroo.EXAMPLE_TASK: task, wallaroo.EXAMPLE_RUN: runs[0]["run_id"],
            wallaroo.EXAMPLE_KILLED_TASK: doomed, wallaroo.EXAMPLE_SHA: orchestration["sha"]}


def aws_keys(server: Server) -> tuple[str, str]:
    env = {**os.environ, "MODELPORT_HOME": str(server.home)}
    out = subprocess.run([sys.executable, "-m", "modelport.cli", "token", "create", "conformance", "--aws"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return (re.search(r"aws_access_key_id:\s+(\S+)", out).group(1),  # type: ignore[union-attr]
            re.search(r"aws_secret_access_key:\s+(\S+)", out).group(1))  # type: ignore[union-attr]


def seed_sagemaker(server: Server, keys: tuple[str, str], folder: Path) -> dict[Any, Any]:
    import boto3

    tarball = folder / "iris.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(build_sklearn_classifier(folder / "model.joblib"), arcname="model.joblib")
    sm = boto3.client("sagemaker", endpoint_url=server.url, region_name=REGION, aws_access_key_id=keys[0],
                      aws_secret_access_key=keys[1])
    sm.create_model(ModelName="iris", PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"file://{tarball}"})
    sm.create_endpoint_config(EndpointConfigName="iris-config", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "iris", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sm.create_endpoint(EndpointName="iris", EndpointConfigName="iris-config")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="iris", WaiterConfig={"Delay": 1, "MaxAttempts": 180})
    return {}


def dataiku_bundle(folder: Path, version: str) -> Path:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from modelport.services.bundles import build_bundle

    source = folder / f"src-{version}"
    (source / "models").mkdir(parents=True)
    (source / "functions").mkdir()
    joblib.dump(LogisticRegression(max_iter=300).fit(*load_iris(return_X_y=True)), source / "models" / "iris.joblib")
    (source / "functions" / "score.py").write_text("def score(a, b):\n    return {'sum': a + b}\n")
    (source / "modelport-bundle.json").write_text(json.dumps({"format": 1, "version": version, "endpoints": [
        {"id": "iris", "type": "prediction", "framework": "sklearn", "model": "models/iris.joblib",
         "task": "classification", "features": FEATURES},
        {"id": "score", "type": "python-function", "module": "functions/score.py", "function": "score"}]}))
    build_bundle(source, folder / f"iris-{version}.zip")
    return folder / f"iris-{version}.zip"


def seed_dataiku(server: Server, imports: Path) -> dict[Any, Any]:
    api = f"{server.url}/admin/api"
    headers = server.headers

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        reply = httpx.request(method, f"{api}{path}", headers=headers, timeout=180, **kwargs)
        assert reply.status_code < 300, (path, reply.text)
        return reply

    bundles = {version: dataiku_bundle(imports, version) for version in ("v0", "v1", "v2")}
    for service in (dataiku.EXAMPLE_SERVICE, dataiku_admin.RETIRED_SERVICE, dataiku_admin.IDLE_SERVICE):
        call("POST", "/services", json={"serviceId": service})
    for version in ("v0", "v1"):
        call("POST", f"/services/iris/generations/actions/importFromArchive",
             params={"filePath": str(bundles[version])})
    call("POST", "/services/iris/actions/switchTo/v1")
    service_keys = [call("POST", "/auth/keys", json={"label": f"k{i}"}).json()["id"] for i in range(2)]
    by_id = call("POST", "/keys", json={"label": "by-id"}).json()["id"]
    by_value = call("POST", "/keys", json={"label": "by-value"}).json()["key"]
    return {dataiku.EXAMPLE_BUNDLE_PATH: str(bundles["v2"]), dataiku.EXAMPLE_SERVICE_KEY_ID: service_keys[0],
            dataiku_admin.EXAMPLE_RETIRED_SERVICE_KEY_ID: service_keys[1],
            dataiku_admin.EXAMPLE_ADMIN_KEY_ID: by_id, dataiku_admin.EXAMPLE_ADMIN_KEY_VALUE: by_value}


def seed_craftai(server: Server, code: Path) -> dict[Any, Any]:
    from craft_ai_sdk import CraftAiSdk
    from craft_ai_sdk.io import Input, Output

    (code / "src").mkdir()
    (code / "src" / "double.py").write_text(CRAFT_FUNCTION)
    sdk = CraftAiSdk(sdk_token=server.token, environment_url=server.url, control_url=server.url, verbose_log=False)
    for name in (craftai.EXAMPLE_PIPELINE, "retired-pipeline"):
        sdk.create_pipeline(pipeline_name=name, function_path="src/double.py", function_name="double",
                            container_config={"local_folder": str(code)},
                            inputs=[Input("x", "number")], outputs=[Output("y", "number"), Output("report", "file")])
    api = f"{server.url}/api/v1"
    for name in (craftai.EXAMPLE_ENDPOINT, "retired-endpoint", "spare-endpoint"):
        reply = httpx.post(f"{api}/endpoints", headers=server.headers, timeout=60, json={
            "name": name, "pipeline_name": craftai.EXAMPLE_PIPELINE, "endpoint_token": craftai.EXAMPLE_ENDPOINT_TOKEN})
        assert reply.status_code == 200, reply.text
    executions = [sdk.run_pipeline(craftai.EXAMPLE_PIPELINE, inputs={"x": 1})["execution_id"] for _ in range(2)]
    endpoint = httpx.post(f"{server.url}/endpoints/{craftai.EXAMPLE_ENDPOINT}", json={"x": 3}, timeout=60,
                          headers={"Authorization": f"EndpointToken {craftai.EXAMPLE_ENDPOINT_TOKEN}"})
    assert endpoint.status_code == 200, endpoint.text
    reply = httpx.put(f"{api}/environment-variables", headers=server.headers, timeout=30,
                      json={"environment_variables": {"IRIS_SCALE": "2", "RETIRED_VAR": "x"}})
    assert reply.status_code == 204, reply.text
    datastore = server.home / "craftai" / "datastore" / "iris"
    datastore.mkdir(parents=True, exist_ok=True)
    (datastore / "input.json").write_text('{"x": 1}')
    signed = httpx.post(f"{api}/data-store/download", headers=server.headers, timeout=30,
                        files={"path_to_object": (None, "iris/input.json")})
    assert signed.status_code == 200, signed.text
    query = dict(httpx.URL(signed.json()["signed_url"]).params)
    return {craftai.EXAMPLE_EXECUTION: executions[0], craftai.EXAMPLE_RETIRED_EXECUTION: executions[1],
            craftai.EXAMPLE_ENDPOINT_EXECUTION: endpoint.json()["execution_id"],
            craftai.EXAMPLE_REFRESH_TOKEN: server.token, craftai.EXAMPLE_SIGNATURE: query["signature"],
            craftai.EXAMPLE_EXPIRES: int(query["expires"])}


def seed(server: Server, folders: dict[str, Path], keys: tuple[str, str]) -> dict[Any, Any]:
    """Every face's objects, made side by side (most of the time is replicas and environments starting)."""
    token = server.post("/modelport/v1/tokens", {"name": "to-revoke"}).json()["id"]
    credential = server.post("/modelport/v1/credentials", {"name": "to-revoke-too"}).json()["id"]
    for email in (native.EXAMPLE_USER, "member@example.com", "departing@example.com"):
        assert server.post("/modelport/v1/users", {"email": email}).status_code == 201
    def timed(seed_face: Callable[..., dict], *args: Any) -> dict:
        started = time.monotonic()
        try:
            return seed_face(*args)
        finally:
            print(f"{seed_face.__name__}: {time.monotonic() - started:.0f} s")

    with ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(timed, seed_wallaroo, server, folders["artifacts"]),
                pool.submit(timed, seed_sagemaker, server, keys, folders["artifacts"]),
                pool.submit(timed, seed_dataiku, server, folders["imports"]),
                pool.submit(timed, seed_craftai, server, folders["code"])]
        live: dict[Any, Any] = {native.EXAMPLE_TOKEN_ID: token, native.EXAMPLE_CREDENTIAL_ID: credential}
        for job in jobs:
            live.update(job.result())
    added = server.post("/v1/api/workspaces/add_user", {"workspace_id": 1, "email": "departing@example.com"})
    assert added.status_code == 200, added.text  # the member the remove_user example removes
    return live


def substituted(document: Any, live: dict[Any, Any]) -> Any:
    """The document with each stand-in for a server-made value replaced by the live one."""
    if isinstance(document, dict):
        return {k: substituted(v, live) for k, v in document.items()}
    if isinstance(document, list):
        return [substituted(v, live) for v in document]
    if isinstance(document, (str, int)) and not isinstance(document, bool) and document in live:
        return live[document]
    if isinstance(document, str):
        for stand_in, value in live.items():
            if isinstance(stand_in, str) and stand_in in document:
                document = document.replace(stand_in, str(value))
    return document


# -- credentials per face -------------------------------------------------------------------------------------------

class FaceAuth(requests.auth.AuthBase):
    """Signs each request as its face expects, on the bytes actually sent: SigV4 for SageMaker, the endpoint token
    for Craft AI endpoints, the admin token as Bearer everywhere else."""

    def __init__(self, token: str, keys: tuple[str, str]) -> None:
        from botocore.credentials import Credentials

        self.token = token
        self.credentials = Credentials(*keys)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        path = urlsplit(request.url).path
        if path in ("/", "/sagemaker") or (path.startswith("/endpoints/") and path.endswith("/invocations")):
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest

            request.headers.pop("Authorization", None)
            signed = AWSRequest(method=request.method, url=request.url, data=request.body or b"",
                                headers=dict(request.headers))
            SigV4Auth(self.credentials, "sagemaker", REGION).add_auth(signed)
            request.headers.update(dict(signed.headers))
        elif path.startswith("/endpoints/"):
            request.headers["Authorization"] = f"EndpointToken {craftai.EXAMPLE_ENDPOINT_TOKEN}"
        else:
            request.headers["Authorization"] = f"Bearer {self.token}"
        return request


# -- the run --------------------------------------------------------------------------------------------------------

# Operations that end, disable or change an object other operations use: they run after all the others (their
# examples name objects of their own, but generated cases may reach any object the run has seen).
DESTRUCTIVE = {"wallaroo_undeploy_pipeline", "wallaroo_task_kill", "dataiku_disable_service",
               "dataiku_disable_service_spec", "craftai_update_deployment", "modelport_remove_user",
               "wallaroo_workspace_remove_user"}


def one_parse_at_a_time(stream: Any) -> Any:
    """CPython 3.11 before 3.11.8 corrupts its AST recursion counter when two threads parse at once (gh-106905),
    and hypothesis parses source while it describes strategies: the workers take turns to parse."""
    import ast

    parse, lock = ast.parse, threading.Lock()

    def serialised(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return parse(*args, **kwargs)

    ast.parse = serialised  # type: ignore[assignment]
    try:
        yield from stream
    finally:
        ast.parse = parse  # type: ignore[assignment]


def run_schemathesis(server: Server, document: dict[str, Any], auth: FaceAuth) -> tuple[dict, list, int]:
    import hypothesis.strategies._internal.random  # noqa: F401 - imported here, not raced for by two workers
    from schemathesis.engine import events, from_schema

    # How the bodies of the faces' own media types are written: AWS's JSON is JSON, CSV is text, tensors are bytes.
    schemathesis.serializer.alias("application/x-amz-json-1.1", "application/json")
    schemathesis.serializer.alias("text/csv", "text/plain")
    for binary in ("application/x-npy", "application/vnd.apache.arrow.file"):
        schemathesis.serializer.alias(binary, "application/octet-stream")
    config = schemathesis.Config.from_dict({
        "base-url": server.url,
        "workers": 2,
        "seed": 1,
        "max-redirects": 0,  # a redirect is an answer of its own (the dashboard's entrance, a pending output)
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        # Path parameters come from the examples, not from values seen in answers: a generated case that names a
        # live object would switch, import or start replicas for real, and the run would wait on processes.
        "phases": {"stateful": {"enabled": False},
                   **{phase: {"extra-data-sources": {"responses": False}}
                      for phase in ("examples", "coverage", "fuzzing")}},
        # Every check. A request the schemas allow may still break a rule JSON Schema cannot state (a cron
        # expression, a model file that loads, an archive's contents, a name's pattern): that is a 400, not a bug.
        "checks": {"enabled": True, "positive_data_acceptance": {
            "expected-statuses": ["2xx", "3xx", "400", "401", "403", "404", "409", "429"]}},
        "request-timeout": 60,
    })
    schema = schemathesis.openapi.from_dict(document, config=config)
    destructive = sorted(op["operationId"] for item in document["paths"].values() for method, op in item.items()
                         if method == "delete" or op["operationId"] in DESTRUCTIVE)
    statuses: dict[str, set[int]] = defaultdict(set)
    elapsed: dict[str, float] = defaultdict(float)
    samples: dict[str, list[str]] = defaultdict(list)
    failures: list[str] = []
    cases = 0
    phase_started = time.monotonic()
    for part in (schema.exclude(operation_id=destructive), schema.include(operation_id=destructive)):
        part.auth.set_from_requests(auth)
        for event in one_parse_at_a_time(from_schema(part).execute()):
            if isinstance(event, events.PhaseFinished):
                print(f"{event.phase.name.value}: {time.monotonic() - phase_started:.0f} s, {cases} cases so far")
                phase_started = time.monotonic()
            if isinstance(event, events.ScenarioFinished):
                for interaction in event.recorder.interactions.values():
                    if interaction.response is not None:
                        statuses[event.recorder.label].add(interaction.response.status_code)
                        elapsed[event.recorder.label] += interaction.response.elapsed
                        samples[event.recorder.label].append(
                            f"{interaction.request.method} {interaction.request.uri} -> {interaction.response.status_code}")
                        cases += 1
                for checks in event.recorder.checks.values():
                    for check in checks:
                        if check.failure_info is not None:
                            failure = check.failure_info.failure
                            failures.append(f"{event.recorder.label}: {check.name}: {failure.title}\n"
                                            f"{failure.message}\n{check.failure_info.code_sample}")
            elif isinstance(event, (events.NonFatalError, events.FatalError)):
                failures.append(f"error: {getattr(event, 'label', '')} "
                                f"{getattr(event, 'value', None) or getattr(event, 'exception', None)}")
    slowest = sorted(elapsed.items(), key=lambda item: -item[1])[:8]
    print("slowest operations (s spent in requests):", ", ".join(f"{op} {t:.0f}" for op, t in slowest))
    for label, status_set in statuses.items():
        if not any(200 <= s < 400 for s in status_set):
            print("\n".join(samples[label][:3]))
    return statuses, failures, cases


def successes(operation: dict[str, Any]) -> range:
    """2xx; or 3xx for an operation that only redirects."""
    documented = [status for status in operation["responses"] if status[0] in "23"]
    return range(300, 400) if all(status.startswith("3") for status in documented) else range(200, 300)


@pytest.mark.conformance
@pytest.mark.timeout(900)
def test_every_operation_is_described_truly(server: Server, folders: dict[str, Path]) -> None:
    started = time.monotonic()
    keys = aws_keys(server)
    live = seed(server, folders, keys)
    seeded = time.monotonic()
    document = httpx.get(f"{server.url}/openapi.json", headers=server.headers, timeout=30).json()
    operations = {f"{method.upper()} {path}": successes(op) for path, item in document["paths"].items()
                  for method, op in item.items()}
    statuses, failures, cases = run_schemathesis(server, substituted(document, live), FaceAuth(server.token, keys))
    finished = time.monotonic()
    unanswered = sorted(op for op, wanted in operations.items() if not any(s in wanted for s in statuses.get(op, ())))
    print(f"\n{len(operations)} operations, {cases} cases, {len(operations) - len(unanswered)} reached a success "
          f"(2xx; 3xx for a redirect-only one); seeding {seeded - started:.0f} s, schemathesis {finished - seeded:.0f} s")
    for op in unanswered:
        print(f"  no 2xx: {op} {sorted(statuses.get(op, ()))}")
    report = os.environ.get("MODELPORT_CONFORMANCE_REPORT")
    if report:
        summary = [f"{op} {sorted(statuses.get(op, ()))}" for op in unanswered]
        Path(report).write_text("\n".join(summary) + "\n\n" + "\n\n".join(failures))
    assert not failures, "\n\n".join(failures[:20]) + f"\n\n{len(failures)} failures"
    assert not unanswered, f"operations that never reached a 2xx: {unanswered}"


# -- the description's structure, and the server fixes the run found ----------------------------------------------

def test_the_description_is_complete_by_construction() -> None:
    """Without a server: what every operation must have, whichever face and branch added it."""
    from modelport.api.app import create_app, openapi_document
    from modelport.settings import Settings

    document = openapi_document(create_app(Settings()).fastapi_app)
    schemes = set(document["components"]["securitySchemes"])
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            assert "422" not in responses, where  # FastAPI's default: the faces answer 400
            assert any(status[0] in "23" for status in responses), where
            for status, response in responses.items():
                if status[0] in "45":  # the face's error body, or one the route declares itself
                    assert response.get("$ref", "#/components/responses/").startswith("#/components/responses/") \
                        and ("$ref" in response or "content" in response), where
                json_answer = response.get("content", {}).get("application/json", {})
                assert json_answer.get("schema") != {"type": "string"} or status[0] != "2", where
            assert "400" in responses, where
            assert "security" in operation and all(set(r) <= schemes for r in operation["security"]), where
            if operation["security"]:
                assert "401" in responses, where
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{([^}]+)}", path)), where
            assert all("example" in p for p in operation.get("parameters", []) if p["in"] == "path"), where
    assert document["paths"]["/"]["post"]["security"] == [{"sigv4": []}]
    assert document["paths"]["/endpoints/{path}"]["post"]["security"] == [{"endpointToken": []}]
    assert document["paths"]["/admin/api/services"]["get"]["security"] == [{"dataikuKey": []}, {"bearer": []}]
    assert document["paths"]["/healthz"]["get"]["security"] == []
    wallaroo_404 = document["components"]["responses"]["Wallaroo404"]["content"]["application/json"]["schema"]
    assert wallaroo_404 == {"$ref": "#/components/schemas/WallarooError"}
    assert set(document["components"]["schemas"]["DataikuError"]["required"]) == {
        "errorType", "message", "detailedMessage"}


def test_a_405_names_every_method_of_its_path(server: Server) -> None:
    """FastAPI named only the methods of the route that matched (one per method here); the fast path had no 405."""
    reply = httpx.put(f"{server.url}/admin/api/services/iris", headers=server.headers)
    assert reply.status_code == 405 and reply.headers["allow"] == "DELETE, GET", reply.headers
    assert reply.json()["errorType"] == "MethodNotAllowed"
    reply = httpx.get(f"{server.url}/v2/models/iris-pipeline/infer", headers=server.headers)
    assert reply.status_code == 405 and reply.headers["allow"] == "POST"
    assert set(reply.json()) == {"error"}


def test_fixes_for_what_the_run_found(server: Server) -> None:
    # SageMaker without credentials: 401 (a bad signature stays 403).
    reply = httpx.post(f"{server.url}/", headers={"X-Amz-Target": "SageMaker.ListModels"}, content=b"{}")
    assert reply.status_code == 401 and reply.json()["__type"] == "MissingAuthenticationTokenException"
    # Wallaroo bodies are read as the schema says: 0 is not a boolean, nor false an integer.
    reply = server.post("/v1/api/task/list", {"workspace_id": 1, "killed": 0})
    assert reply.status_code == 400 and reply.json()["field"] == "killed"
    reply = server.post("/v1/api/task/get_by_id", {"id": "x", "run_limit": False})
    assert reply.status_code == 400 and reply.json()["field"] == "run_limit"
    # A body that is not an object, or a field of the wrong type, is a 400, not silently ignored.
    for path, body in (("/admin/api/keys", [None]), ("/admin/api/auth/keys", [None]),
                       ("/admin/api/keys", {"description": {}})):
        reply = httpx.post(f"{server.url}{path}", json=body, headers=server.headers)
        assert reply.status_code == 400 and reply.json()["errorType"] == "InvalidInput", (path, reply.text)
    for path, body in (("/api/v1/endpoints/spare-endpoint/generate-new-token", [None]),
                       ("/api/v1/endpoints/spare-endpoint/generate-new-token", {"endpoint_token": 7}),
                       ("/api/v1/deployments/iris-endpoint/logs", [None])):
        reply = httpx.post(f"{server.url}{path}", json=body, headers=server.headers)
        assert reply.status_code == 400 and reply.json()["name"] == "InvalidInput", (path, reply.text)
    # A mapping is a list (an object was read as an empty one).
    reply = httpx.patch(f"{server.url}/api/v1/deployments/nothing", json={"outputs_mapping": {}}, headers=server.headers)
    assert reply.status_code in (400, 404), reply.text
