"""Wallaroo control plane against a real server: the seed's pipeline-management examples run as written (only the
URL and token substituted), uploads are verified by really loading them, bad input is refused and creates nothing."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import requests

from tests.support import Server, build_ccfraud_onnx, build_sklearn_classifier, build_xgboost_regressor

pytestmark = pytest.mark.database


class Auth:
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Wl:
    """Just enough of the Wallaroo client object for the seed's code: `wl.api_endpoint` and `wl.auth.auth_header()`."""

    def __init__(self, server: Server) -> None:
        self.api_endpoint = server.url
        self.auth = Auth(server.token)


def wait_for_status(server: Server, version_id: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        reply = server.post("/v1/api/models/get_version_by_id", {"model_version_id": version_id}).json()
        version = reply["model_version"]["model_version"]
        if version["status"] in ("ready", "error") or time.monotonic() > deadline:
            return version
        time.sleep(0.1)


def upload(server: Server, workspace_id: int, name: str, path, framework: str) -> dict:
    metadata = {"name": name, "visibility": "private", "workspace_id": workspace_id,
                "conversion": {"framework": framework, "python_version": "3.11", "requirements": []}}
    files = {"metadata": (None, json.dumps(metadata), "application/json"),
             "file": (path.name, open(path, "rb"), "application/octet-stream")}
    reply = requests.post(f"{server.url}/v1/api/models/upload_and_convert", files=files, headers=server.headers)
    assert reply.status_code == 200, reply.text
    return reply.json()["insert_models"]["returning"][0]["models"][0]


def counts(server: Server) -> tuple[int, int, int, int]:
    workspaces = server.post("/v1/api/workspaces/list", {}).json()["workspaces"]
    models = server.post("/v1/api/models/list", {}).json()["models"]
    versions = sum(len(m["models"]) for m in models)
    pipelines = server.post("/v1/api/pipelines/list", {}).json()["pipelines"]
    pipeline_versions = sum(len(p["pipeline_versions"]) for p in pipelines)
    return len(workspaces), versions, len(pipelines), pipeline_versions


@pytest.fixture(scope="module")
def seeded(server: Server, model_dir) -> dict:
    """The seed's flow, step by step, keeping what later tests need."""
    wl = Wl(server)
    ccfraud = build_ccfraud_onnx(model_dir / "ccfraud.onnx")

    headers = wl.auth.auth_header()
    reply = requests.post(f"{wl.api_endpoint}/v1/api/workspaces/create", json={"workspace_name": "seed-workspace"},
                          headers=headers)
    assert reply.status_code == 200, reply.text
    example_workspace_id = reply.json()["workspace_id"]

    # Create empty pipeline via Requests (seed).
    headers = wl.auth.auth_header()
    endpoint = f"{wl.api_endpoint}/v1/api/pipelines/create"
    data = {"pipeline_id": "api-empty-pipeline", "workspace_id": example_workspace_id, "definition": {}}
    response = requests.post(endpoint, json=data, headers=headers, verify=True).json()
    empty_pipeline_id = response["pipeline_pk_id"]
    empty_pipeline_variant_id = response["pipeline_variant_pk_id"]
    assert set(response) == {"pipeline_pk_id", "pipeline_variant_pk_id", "pipeline_variant_version"}

    # Create empty pipeline via curl (seed): same name again adds a version to the same pipeline.
    reply = httpx.post(endpoint, headers={"Authorization": headers["Authorization"], "Content-Type": "application/json"},
                       content='{"pipeline_id": "api-empty-pipeline", "workspace_id": %d,"definition": {} }'
                       % example_workspace_id)
    assert reply.status_code == 200, reply.text
    assert reply.json()["pipeline_pk_id"] == empty_pipeline_id
    assert reply.json()["pipeline_variant_pk_id"] != empty_pipeline_variant_id

    # Create pipeline with model steps via Requests (seed), upload first.
    headers = wl.auth.auth_header()
    endpoint = f"{wl.api_endpoint}/v1/api/models/upload_and_convert"
    workspace_id = example_workspace_id
    framework = "onnx"
    example_model_name = "api-sample-model"
    metadata = {"name": example_model_name, "visibility": "public", "workspace_id": workspace_id,
                "conversion": {"framework": framework, "python_version": "3.8", "requirements": []}}
    files = {"metadata": (None, json.dumps(metadata), "application/json"),
             "file": (example_model_name, open(ccfraud, "rb"), "application/octet-stream")}
    response = requests.post(endpoint, files=files, headers=headers).json()
    example_model_id = response["insert_models"]["returning"][0]["models"][0]["id"]

    headers = wl.auth.auth_header()
    endpoint = f"{wl.api_endpoint}/v1/api/models/list_versions"
    data = {"model_id": example_model_name, "models_pk_id": example_model_id}
    response = requests.post(endpoint, json=data, headers=headers, verify=True).json()
    example_model_sha = response[-1]["sha"]
    example_model_version = response[-1]["model_version"]

    headers = wl.auth.auth_header()
    endpoint = f"{wl.api_endpoint}/v1/api/pipelines/create"
    data = {"pipeline_id": "api-pipeline-with-models", "workspace_id": example_workspace_id,
            "definition": {"steps": [{"ModelInference": {"models": [
                {"name": example_model_name, "version": example_model_version, "sha": example_model_sha}]}}]}}
    response = requests.post(endpoint, json=data, headers=headers, verify=True).json()
    model_pipeline_id = response["pipeline_pk_id"]
    model_pipeline_variant_id = response["pipeline_variant_pk_id"]

    # Copy a pipeline via Requests (seed).
    headers = wl.auth.auth_header()
    endpoint = f"{wl.api_endpoint}/v1/api/pipelines/copy"
    data = {"name": "api-copied-pipeline-requests", "workspace_id": example_workspace_id,
            "source_pipeline": model_pipeline_id}
    copied = requests.post(endpoint, json=data, headers=headers, verify=True).json()

    return {"workspace_id": example_workspace_id, "model_name": example_model_name, "model_pk": example_model_id,
            "model_sha": example_model_sha, "model_version": example_model_version,
            "pipeline_id": model_pipeline_id, "pipeline_variant_id": model_pipeline_variant_id, "copied": copied,
            "ccfraud": ccfraud}


def test_config_is_public(server: Server) -> None:
    assert httpx.get(f"{server.url}/v1/api/config").json() == {"default_arch": "x86"}


def test_seed_flow_creates_workspace_model_pipelines_and_copy(server: Server, seeded: dict) -> None:
    version = wait_for_status(server, seeded["model_pk"])
    assert version["status"] == "ready", version
    assert version["sha"] == seeded["model_sha"] and len(version["sha"]) == 64
    assert version["model_version"] == seeded["model_version"]

    copied = seeded["copied"]
    assert set(copied) == {"pipeline_pk_id", "pipeline_variant_pk_id", "pipeline_version", "deployment"}
    assert copied["pipeline_version"] is None and copied["deployment"] is None

    source = server.post("/v1/api/pipelines/get_pipeline_by_name",
                         {"pipeline_name": "api-pipeline-with-models", "workspace_id": seeded["workspace_id"]}).json()
    copy = server.post("/v1/api/pipelines/get_pipeline_by_name",
                       {"pipeline_name": "api-copied-pipeline-requests", "workspace_id": seeded["workspace_id"]}).json()
    assert copy["pipeline"]["id"] == copied["pipeline_pk_id"] != source["pipeline"]["id"]
    assert copy["pipeline"]["pipeline_versions"][-1]["definition"] == \
        source["pipeline"]["pipeline_versions"][-1]["definition"]
    step_model = copy["pipeline"]["pipeline_versions"][-1]["definition"]["steps"][0]["ModelInference"]["models"][0]
    assert step_model == {"name": seeded["model_name"], "version": seeded["model_version"], "sha": seeded["model_sha"]}

    workspaces = server.post("/v1/api/workspaces/list", {}).json()["workspaces"]
    mine = next(w for w in workspaces if w["id"] == seeded["workspace_id"])
    assert mine["name"] == "seed-workspace" and mine["archived"] is False
    assert len(mine["pipelines"]) == 3 and len(mine["models"]) == 1


def test_each_upload_is_a_new_version(server: Server, seeded: dict) -> None:
    first = upload(server, seeded["workspace_id"], "versioned-model", seeded["ccfraud"], "onnx")
    second = upload(server, seeded["workspace_id"], "versioned-model", seeded["ccfraud"], "onnx")
    assert first["model_version"] != second["model_version"] and first["sha"] == second["sha"]
    versions = server.post("/v1/api/models/list_versions",
                           {"model_id": "versioned-model", "models_pk_id": second["models_pk_id"]}).json()
    assert [v["model_version"] for v in versions] == [first["model_version"], second["model_version"]]


def test_sklearn_and_xgboost_reach_ready_and_a_corrupt_file_reaches_error(server: Server, seeded: dict,
                                                                          model_dir) -> None:
    sk = upload(server, seeded["workspace_id"], "iris-sklearn",
                build_sklearn_classifier(model_dir / "iris.joblib"), "sklearn")
    xgb = upload(server, seeded["workspace_id"], "xgb-regressor",
                 build_xgboost_regressor(model_dir / "xgb.json"), "xgboost")
    corrupt_path = model_dir / "corrupt.onnx"
    corrupt_path.write_bytes(b"this is not an onnx model" * 10)
    corrupt = upload(server, seeded["workspace_id"], "corrupt-model", corrupt_path, "onnx")
    assert wait_for_status(server, sk["id"])["status"] == "ready"
    assert wait_for_status(server, xgb["id"])["status"] == "ready"
    failed = wait_for_status(server, corrupt["id"])
    assert failed["status"] == "error"
    assert "onnx" in failed["reason"] and len(failed["reason"]) > 20


@pytest.mark.parametrize("name", ["api_pipeline", "a.b", "", "x" * 300, "pipeline-é", "-leading", "trailing-"])
def test_bad_pipeline_names_are_rejected_and_create_nothing(server: Server, seeded: dict, name: str) -> None:
    before = counts(server)
    reply = server.post("/v1/api/pipelines/create",
                        {"pipeline_id": name, "workspace_id": seeded["workspace_id"], "definition": {}})
    assert reply.status_code == 400, reply.text
    assert reply.json()["field"] == "pipeline_id" and reply.json()["code"] == 400
    assert counts(server) == before


@pytest.mark.parametrize("change, field", [
    ({"name": "no-such-model"}, "definition.steps[0].ModelInference.models[0]"),
    ({"sha": "0" * 64}, "definition.steps[0].ModelInference.models[0].sha"),
    ({"version": "00000000-0000-0000-0000-000000000000"}, "definition.steps[0].ModelInference.models[0]"),
])
def test_steps_naming_a_missing_model_or_a_wrong_sha_are_rejected(server: Server, seeded: dict, change: dict,
                                                                 field: str) -> None:
    before = counts(server)
    model = {"name": seeded["model_name"], "version": seeded["model_version"], "sha": seeded["model_sha"], **change}
    reply = server.post("/v1/api/pipelines/create", {
        "pipeline_id": "api-pipeline-with-models", "workspace_id": seeded["workspace_id"],
        "definition": {"steps": [{"ModelInference": {"models": [model]}}]}})
    assert reply.status_code == 400, reply.text
    assert reply.json()["field"] == field
    assert counts(server) == before


@pytest.mark.parametrize("body, content_type, field", [
    (b"--xyz\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{}", "multipart/form-data; boundary=xyz",
     None),
    (b"not multipart at all", "multipart/form-data", None),
    (b'{"name": "m"}', "application/json", None),
])
def test_malformed_uploads_are_rejected(server: Server, body: bytes, content_type: str, field) -> None:
    before = counts(server)
    reply = httpx.post(f"{server.url}/v1/api/models/upload_and_convert", content=body,
                       headers={**server.headers, "Content-Type": content_type})
    assert 400 <= reply.status_code < 500, reply.text
    assert "msg" in reply.json()
    assert counts(server) == before


@pytest.mark.parametrize("metadata, field", [
    ({"name": "m-no-ws", "conversion": {"framework": "onnx"}}, "metadata.workspace_id"),
    ({"workspace_id": 1, "conversion": {"framework": "onnx"}}, "metadata.name"),
    ({"name": "bad_name", "workspace_id": 1, "conversion": {"framework": "onnx"}}, "name"),
    ({"name": "m-unknown-ws", "workspace_id": 999999, "conversion": {"framework": "onnx"}}, "workspace_id"),
    ({"name": "m-bad-framework", "workspace_id": 1, "conversion": {"framework": "caffe"}}, "conversion.framework"),
])
def test_bad_upload_metadata_is_rejected_and_stores_nothing(server: Server, seeded: dict, metadata: dict,
                                                            field: str) -> None:
    before = counts(server)
    files = {"metadata": (None, json.dumps(metadata), "application/json"),
             "file": ("m.onnx", open(seeded["ccfraud"], "rb"), "application/octet-stream")}
    reply = requests.post(f"{server.url}/v1/api/models/upload_and_convert", files=files, headers=server.headers)
    assert 400 <= reply.status_code < 500, reply.text
    assert reply.json()["field"] == field
    assert counts(server) == before


def test_unknown_ids_are_404(server: Server) -> None:
    assert server.post("/v1/api/models/get_version_by_id", {"model_version_id": 987654}).status_code == 404
    assert server.post("/v1/api/models/list_versions", {"model_id": "nope", "models_pk_id": 987654}).status_code == 404
    assert server.post("/v1/api/pipelines/get_pipeline_by_name", {"pipeline_name": "nope"}).status_code == 404
    reply = server.post("/v1/api/pipelines/copy", {"name": "c", "workspace_id": 1, "source_pipeline": 987654})
    assert reply.status_code == 404 and reply.json()["field"] == "source_pipeline"


def test_malformed_json_and_wrong_types_are_400(server: Server) -> None:
    reply = httpx.post(f"{server.url}/v1/api/workspaces/create", content=b"{oops", headers=server.headers)
    assert reply.status_code == 400 and "JSON" in reply.json()["msg"]
    reply = server.post("/v1/api/workspaces/create", {"workspace_name": 12})
    assert reply.status_code == 400 and reply.json()["field"] == "workspace_name"
    reply = server.post("/v1/api/pipelines/create", {"pipeline_id": "ok-name", "workspace_id": "ten", "definition": {}})
    assert reply.status_code == 400 and reply.json()["field"] == "workspace_id"
    reply = server.post("/v1/api/pipelines/create", {"pipeline_id": "ok-name", "workspace_id": 1, "definition": [1]})
    assert reply.status_code == 400 and reply.json()["field"].startswith("definition")


def test_duplicate_workspace_is_409(server: Server) -> None:
    assert server.post("/v1/api/workspaces/create", {"workspace_name": "twice"}).status_code == 200
    reply = server.post("/v1/api/workspaces/create", {"workspace_name": "twice"})
    assert reply.status_code == 409 and reply.json()["field"] == "workspace_name"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer"}])
def test_no_or_bad_token_is_401(server: Server, headers: dict) -> None:
    for path in ("/v1/api/workspaces/list", "/v1/api/pipelines/create", "/v1/api/models/upload_and_convert",
                 "/modelport/v1/tokens"):
        reply = httpx.post(f"{server.url}{path}", json={}, headers=headers)
        assert reply.status_code == 401, (path, reply.text)
    assert httpx.get(f"{server.url}/openapi.json", headers=headers).status_code == 401


def test_tokens_can_be_created_used_and_revoked(server: Server) -> None:
    created = server.post("/modelport/v1/tokens", {"name": "ci-bot"})
    assert created.status_code == 201
    token = created.json()["token"]
    user = {"Authorization": f"Bearer {token}"}
    assert httpx.post(f"{server.url}/v1/api/workspaces/list", json={}, headers=user).status_code == 200
    # a user token may not manage tokens
    assert httpx.post(f"{server.url}/modelport/v1/tokens", json={"name": "x"}, headers=user).status_code == 403
    listed = httpx.get(f"{server.url}/modelport/v1/tokens", headers=server.headers).json()["tokens"]
    assert any(t["id"] == created.json()["id"] and "token" not in t for t in listed)
    revoked = httpx.delete(f"{server.url}/modelport/v1/tokens/{created.json()['id']}", headers=server.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert httpx.post(f"{server.url}/v1/api/workspaces/list", json={}, headers=user).status_code == 401
    assert httpx.delete(f"{server.url}/modelport/v1/tokens/unknown", headers=server.headers).status_code == 404


def test_openapi_has_a_stable_operation_id_on_every_operation(server: Server) -> None:
    document = httpx.get(f"{server.url}/openapi.json", headers=server.headers).json()
    operations = [op for item in document["paths"].values() for op in item.values()]
    assert len(operations) >= 15
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids))
    assert "wallaroo_create_pipeline" in ids and "wallaroo_upload_and_convert_model" in ids
    create = document["paths"]["/v1/api/pipelines/create"]["post"]
    assert "pipeline_id" in create["requestBody"]["content"]["application/json"]["schema"]["properties"]


def test_everything_survives_a_restart(server: Server, seeded: dict) -> None:
    wait_for_status(server, seeded["model_pk"])  # compare settled state, not a model still loading
    before = counts(server)
    versions_before = server.post("/v1/api/models/list_versions",
                                  {"model_id": seeded["model_name"], "models_pk_id": seeded["model_pk"]}).json()
    server.restart()
    assert counts(server) == before
    versions_after = server.post("/v1/api/models/list_versions",
                                 {"model_id": seeded["model_name"], "models_pk_id": seeded["model_pk"]}).json()
    assert versions_after == versions_before
    assert server.post("/v1/api/workspaces/list", {}).status_code == 200


PYTHON_MODEL = b'''
import pandas as pd


class Doubler:
    """predict(DataFrame) -> DataFrame, the python-model contract."""

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"doubled": frame["x"] * 2})
'''


def test_python_models_as_module_and_zip_reach_ready(server: Server, seeded: dict, model_dir) -> None:
    import zipfile

    module = model_dir / "doubler.py"
    module.write_bytes(PYTHON_MODEL)
    archive = model_dir / "doubler.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("main.py", PYTHON_MODEL)
    broken = model_dir / "broken.py"
    broken.write_bytes(b"class NoPredict:\n    pass\n")
    as_module = upload(server, seeded["workspace_id"], "py-doubler", module, "python")
    as_zip = upload(server, seeded["workspace_id"], "py-doubler-zip", archive, "python")
    no_predict = upload(server, seeded["workspace_id"], "py-broken", broken, "python")
    assert wait_for_status(server, as_module["id"])["status"] == "ready"
    assert wait_for_status(server, as_zip["id"])["status"] == "ready"
    failed = wait_for_status(server, no_predict["id"])
    assert failed["status"] == "error" and "predict" in failed["reason"]


def test_overlong_metadata_values_are_400_not_500(server: Server, seeded: dict) -> None:
    """PostgreSQL enforces column lengths that SQLite does not: every bounded value is validated first."""
    before = counts(server)
    for conversion in ({"framework": "onnx", "python_version": "3" * 40}, {"framework": "onnx", "arch": "a" * 40},
                       {"framework": "x" * 100}):
        metadata = {"name": "long-values", "workspace_id": seeded["workspace_id"], "conversion": conversion}
        files = {"metadata": (None, json.dumps(metadata), "application/json"),
                 "file": ("m.onnx", open(seeded["ccfraud"], "rb"), "application/octet-stream")}
        reply = requests.post(f"{server.url}/v1/api/models/upload_and_convert", files=files, headers=server.headers)
        assert reply.status_code == 400, reply.text
    assert counts(server) == before
