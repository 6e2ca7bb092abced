"""Users and workspaces (issue 18 item 9), the matrix over HTTP: two users, each the owner of one workspace, each
with a model, a pipeline, a live deployment, an orchestration with a task and its run, SageMaker resources and a
Craft AI environment variable; neither reads nor changes the other's, through any face, the console or inference;
membership through Wallaroo's own routes opens exactly the workspace it names; admins see everything."""

from __future__ import annotations

import copy
import time

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from tests.support import (
    SEED_DENSE_INPUT, Server, build_ccfraud_onnx, create_pipeline, deploy, infer_records, upload_model, wait_status,
)
from tests.test_jobs import ready_orchestration

pytestmark = pytest.mark.database  # new tables, sealed columns and migration 0008: run again on PostgreSQL

SECRET = "alice-task-password"


def acting(server: Server, token: str) -> Server:
    """The same server, called with another token (the helpers of tests.support use `server.headers`)."""
    other = copy.copy(server)
    other.token = token
    return other


def new_user(server: Server, email: str) -> Server:
    assert httpx.post(f"{server.url}/modelport/v1/users", headers=server.headers,
                      json={"email": email}).status_code == 201
    reply = httpx.post(f"{server.url}/modelport/v1/credentials", headers=server.headers,
                       json={"name": f"{email}-token", "kind": "user", "user": email})
    assert reply.status_code == 201, reply.text
    return acting(server, reply.json()["token"])


def aws_key(server: Server, email: str, workspace: int):
    reply = httpx.post(f"{server.url}/modelport/v1/credentials", headers=server.headers,
                       json={"name": f"{email}-aws", "kind": "aws", "user": email, "workspace_id": workspace})
    assert reply.status_code == 201, reply.text
    key = reply.json()
    return boto3.client("sagemaker", endpoint_url=server.url, region_name="eu-west-1",
                        aws_access_key_id=key["aws_access_key_id"], aws_secret_access_key=key["aws_secret_access_key"])


def own_world(admin: Server, user: Server, email: str, name: str, model_path) -> dict:
    """A workspace the user creates (and so owns), with one of every Wallaroo resource in it."""
    workspace = user.post("/v1/api/workspaces/create", {"workspace_name": f"ws-{name}"}).json()["workspace_id"]
    model = upload_model(user, workspace, f"model-{name}", model_path, "onnx")
    pipeline = create_pipeline(user, workspace, f"pipe-{name}", [model])
    deployment_id = deploy(user, f"pipe-{name}", pipeline)
    orchestration = ready_orchestration(user, workspace, {"main.py": b"print('hello')\n"})
    task = user.post("/v1/api/task/run_once", {"workspace_id": workspace, "orch_id": orchestration["id"],
                                               "json": {"password": f"{SECRET}-{name}"}}).json()["id"]
    deadline = time.monotonic() + 120
    while not (runs := user.post("/v1/api/task/list_task_runs", {"task_id": task}).json()):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    sm = aws_key(admin, email, workspace)
    sm.create_model(ModelName=f"sm-{name}", PrimaryContainer={
        "Image": "683313688378.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"})
    sm.create_endpoint_config(EndpointConfigName=f"cfg-{name}", ProductionVariants=[
        {"VariantName": "main", "ModelName": f"sm-{name}", "InitialInstanceCount": 1}])
    variables = httpx.put(f"{user.url}/api/v1/environment-variables", headers=user.headers,
                          json={"environment_variables": {f"VAR_{name.upper()}": f"value-{name}"}})
    assert variables.status_code == 204, variables.text
    route = f"pipe-{name}-{deployment_id}"
    wait_status(user, route)
    return {"workspace": workspace, "model": model, "pipeline": pipeline, "deployment_id": deployment_id,
            "route": route, "pipe": f"pipe-{name}", "orchestration": orchestration["id"], "task": task,
            "run": runs[0]["run_id"], "sagemaker": sm}


@pytest.fixture(scope="module")
def world(server: Server, model_dir) -> dict:
    path = build_ccfraud_onnx(model_dir / "isolation.onnx")
    alice, bob = new_user(server, "alice@example.com"), new_user(server, "bob@example.com")
    return {"alice": alice, "bob": bob, "a": own_world(server, alice, "alice@example.com", "a", path),
            "b": own_world(server, bob, "bob@example.com", "b", path)}


def test_lists_show_only_the_callers_workspaces(server: Server, world: dict) -> None:
    bob, a, b = world["bob"], world["a"], world["b"]
    spaces = bob.post("/v1/api/workspaces/list", {}).json()["workspaces"]
    assert [w["id"] for w in spaces] == [b["workspace"]]
    assert {m["workspace_id"] for m in bob.post("/v1/api/models/list", {}).json()["models"]} == {b["workspace"]}
    assert [p["name"] for p in bob.post("/v1/api/pipelines/list", {}).json()["pipelines"]] == [b["pipe"]]
    everything = server.post("/v1/api/workspaces/list", {}).json()["workspaces"]  # the admin
    assert {a["workspace"], b["workspace"]} <= {w["id"] for w in everything}
    orchestrations = bob.post("/v1/api/orchestration/list_all", {"task_run_status": [], "workspace_ids": None}).json()
    assert {o["workspace"]["id"] for o in orchestrations["orchestrations"]} == {b["workspace"]}


@pytest.mark.parametrize("path, body", [
    ("/v1/api/models/list", lambda a: {"workspace_id": a["workspace"]}),
    ("/v1/api/models/upload_and_convert", None),
    ("/v1/api/pipelines/create", lambda a: {"pipeline_id": "intruder", "workspace_id": a["workspace"],
                                            "definition": {"steps": []}}),
    ("/v1/api/pipelines/list", lambda a: {"workspace_id": a["workspace"]}),
    ("/v1/api/pipelines/get_pipeline_by_name", lambda a: {"pipeline_name": a["pipe"], "workspace_id": a["workspace"]}),
    ("/v1/api/admin/get_pipeline_external_url", lambda a: {"workspace_id": a["workspace"], "pipeline_name": a["pipe"]}),
    ("/v1/api/pipelines/get_logs", lambda a: {"pipeline_name": a["pipe"], "workspace_id": a["workspace"]}),
    ("/v1/api/orchestration/list", lambda a: {"workspace_id": a["workspace"]}),
    ("/v1/api/task/list", lambda a: {"workspace_id": a["workspace"]}),
    ("/v1/api/task/run_once", lambda a: {"workspace_id": a["workspace"], "orch_id": a["orchestration"], "json": {}}),
    ("/v1/api/workspaces/list_users", lambda a: {"workspace_id": a["workspace"]}),
    ("/v1/api/workspaces/add_user", lambda a: {"workspace_id": a["workspace"], "email": "bob@example.com"}),
])
def test_naming_another_workspace_is_refused(world: dict, path: str, body) -> None:
    bob, a = world["bob"], world["a"]
    if body is None:
        import json

        reply = httpx.post(bob.url + path, headers=bob.headers, files={
            "metadata": (None, json.dumps({"name": "intruder", "workspace_id": a["workspace"],
                                           "conversion": {"framework": "onnx"}}), "application/json"),
            "file": ("m.onnx", b"x", "application/octet-stream")})
    else:
        reply = bob.post(path, body(a))
    assert reply.status_code == 403, (path, reply.status_code, reply.text)


@pytest.mark.parametrize("path, body", [
    ("/v1/api/models/list_versions", lambda a: {"model_id": a["model"]["model_id"], "models_pk_id": a["model"]["id"]}),
    ("/v1/api/models/get_version_by_id", lambda a: {"model_version_id": a["model"]["id"]}),
    ("/v1/api/pipelines/deploy", lambda a: {"deploy_id": a["pipe"], "pipeline_id": a["pipeline"]["pipeline_pk_id"],
                                            "pipeline_version_pk_id": a["pipeline"]["pipeline_variant_pk_id"]}),
    ("/v1/api/pipelines/copy", lambda a: {"name": "stolen", "workspace_id": a["workspace"],
                                          "source_pipeline": a["pipeline"]["pipeline_pk_id"]}),
    ("/v1/api/status/get_deployment", lambda a: {"name": a["route"]}),
    ("/v1/api/pipelines/undeploy", lambda a: {"pipeline_id": a["pipeline"]["pipeline_pk_id"],
                                              "deployment_id": a["deployment_id"]}),
    ("/v1/api/task/get_by_id", lambda a: {"id": a["task"]}),
    ("/v1/api/task/list_task_runs", lambda a: {"task_id": a["task"]}),
    ("/v1/api/task/get_logs_for_run", lambda a: {"id": a["run"]}),
    ("/v1/api/task/kill", lambda a: {"id": a["task"]}),
])
def test_another_workspaces_resources_do_not_exist(world: dict, path: str, body) -> None:
    reply = world["bob"].post(path, body(world["a"]))
    assert reply.status_code in (403, 404), (path, reply.status_code, reply.text)
    assert SECRET not in reply.text


def test_inference_is_checked_in_every_protocol(world: dict) -> None:
    bob, alice, a = world["bob"], world["alice"], world["a"]
    assert infer_records(alice, a["route"], a["pipe"], [{"dense_input": SEED_DENSE_INPUT}]).status_code == 200
    assert infer_records(bob, a["route"], a["pipe"], [{"dense_input": SEED_DENSE_INPUT}]).status_code == 404
    v2 = {"inputs": [{"name": "dense_input", "shape": [1, 29], "datatype": "FP32", "data": SEED_DENSE_INPUT}]}
    assert httpx.post(f"{bob.url}/v2/models/{a['pipe']}/infer", headers=bob.headers, json=v2).status_code == 404
    assert httpx.get(f"{bob.url}/v2/models/{a['pipe']}", headers=bob.headers).status_code == 404
    assert httpx.post(f"{alice.url}/v2/models/{a['pipe']}/infer", headers=alice.headers, json=v2).status_code == 200


def test_membership_opens_the_workspace_and_removal_closes_it(world: dict) -> None:
    alice, bob, a = world["alice"], world["bob"], world["a"]
    assert bob.post("/v1/api/workspaces/add_user", {"workspace_id": a["workspace"],
                                                    "email": "bob@example.com"}).status_code == 403
    assert alice.post("/v1/api/workspaces/add_user", {"workspace_id": a["workspace"], "email": "bob@example.com",
                                                      "user_type": "COLLABORATOR"}).json() == {}
    users = alice.post("/v1/api/workspaces/list_users", {"workspace_id": a["workspace"]}).json()["users"]
    assert {(u["email"], u["user_type"]) for u in users} == {("alice@example.com", "OWNER"),
                                                             ("bob@example.com", "COLLABORATOR")}
    assert all(set(u) >= {"user_id", "user_type"} for u in users)
    # at once, inference included (the cached workspaces of bob were dropped)
    assert infer_records(bob, a["route"], a["pipe"], [{"dense_input": SEED_DENSE_INPUT}]).status_code == 200
    assert bob.post("/v1/api/task/get_by_id", {"id": a["task"]}).json()["input_data"] == {"password": f"{SECRET}-a"}
    # a collaborator does not manage members
    assert bob.post("/v1/api/workspaces/remove_user", {"workspace_id": a["workspace"],
                                                       "email": "alice@example.com"}).status_code == 403
    assert alice.post("/v1/api/workspaces/remove_user", {"workspace_id": a["workspace"],
                                                         "email": "bob@example.com"}).json() == {"affected_rows": 1}
    assert infer_records(bob, a["route"], a["pipe"], [{"dense_input": SEED_DENSE_INPUT}]).status_code == 404
    assert bob.post("/v1/api/task/get_by_id", {"id": a["task"]}).status_code == 404


def test_faces_without_workspaces_live_in_the_credentials_workspace(world: dict) -> None:
    a, b, bob = world["a"], world["b"], world["bob"]
    assert [m["ModelName"] for m in b["sagemaker"].list_models()["Models"]] == ["sm-b"]
    for call, kwargs in ((b["sagemaker"].describe_model, {"ModelName": "sm-a"}),
                         (b["sagemaker"].delete_model, {"ModelName": "sm-a"}),
                         (b["sagemaker"].describe_endpoint_config, {"EndpointConfigName": "cfg-a"}),
                         (b["sagemaker"].create_endpoint_config, {"EndpointConfigName": "cfg-stolen",
                                                                  "ProductionVariants": [{"VariantName": "v",
                                                                                          "ModelName": "sm-a"}]})):
        with pytest.raises(ClientError) as refused:
            call(**kwargs)
        assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert a["sagemaker"].describe_model(ModelName="sm-a")["ModelName"] == "sm-a"

    variables = f"{bob.url}/api/v1/environment-variables"
    assert [v["name"] for v in httpx.get(variables, headers=bob.headers).json()] == ["VAR_B"]
    assert httpx.delete(f"{variables}/VAR_A", headers=bob.headers).status_code == 404
    assert httpx.put(variables, headers=bob.headers,
                     json={"environment_variables": {"VAR_A": "overwritten"}}).status_code == 409


def test_the_console_shows_and_changes_only_the_users_workspaces(server: Server, world: dict) -> None:
    bob, a, b = world["bob"], world["a"], world["b"]
    with httpx.Client(base_url=server.url) as session:
        assert session.post("/ui/login", data={"token": bob.token}).status_code == 303
        page = session.get("/ui/deployments").text
        assert b["pipe"] in page and a["pipe"] not in page
        assert a["pipe"] not in session.get("/ui/pipelines").text
        assert SECRET not in session.get(f"/ui/tasks/{a['task']}").text
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        undeploy = session.post(f"/ui/deployments/wallaroo:{a['deployment_id']}/undeploy", data={"csrf": csrf})
        assert undeploy.status_code == 404
        assert session.post(f"/ui/tasks/{a['task']}/kill", data={"csrf": csrf}).status_code == 404
        assert session.get(f"/ui/deployments/wallaroo:{a['deployment_id']}/metrics.json").status_code == 404
    # still running: the console's undeploy changed nothing
    assert wait_status(world["alice"], a["route"])["status"] == "Running"


def test_a_new_workspace_is_usable_at_once(world: dict) -> None:
    """The creator owns a new workspace from the next request on, even where workspaces are cached (inference)."""
    bob, b = world["bob"], world["b"]
    assert bob.post("/v1/api/admin/get_pipeline_external_url",
                    {"workspace_id": b["workspace"], "pipeline_name": b["pipe"]}).status_code == 200  # cached now
    created = bob.post("/v1/api/workspaces/create", {"workspace_name": "ws-b-new"}).json()["workspace_id"]
    reply = bob.post("/v1/api/admin/get_pipeline_external_url", {"workspace_id": created, "pipeline_name": "none"})
    assert reply.status_code == 404, reply.text  # a member: nothing deployed there yet (not 403)
    users = bob.post("/v1/api/workspaces/list_users", {"workspace_id": created}).json()["users"]
    assert [(u["email"], u["user_type"]) for u in users] == [("bob@example.com", "OWNER")]


def test_craft_ai_pipelines_deployments_and_executions_stay_in_their_workspace(server: Server, world: dict,
                                                                              tmp_path) -> None:
    from craft_ai_sdk import CraftAiSdk
    from craft_ai_sdk.exceptions import SdkException
    from craft_ai_sdk.io import Input, Output

    alice, bob, a = world["alice"], world["bob"], world["a"]
    folder = tmp_path / "code"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "double.py").write_text("def double(x):\n    return {'y': 2 * x}\n")
    sdk_a = CraftAiSdk(sdk_token=alice.token, environment_url=alice.url, control_url=alice.url, verbose_log=False)
    sdk_b = CraftAiSdk(sdk_token=bob.token, environment_url=bob.url, control_url=bob.url, verbose_log=False)
    sdk_a.create_pipeline(pipeline_name="double-a", function_path="src/double.py", function_name="double",
                          container_config={"local_folder": str(folder)},
                          inputs=[Input("x", "number")], outputs=[Output("y", "number")])
    execution = sdk_a.run_pipeline("double-a", inputs={"x": 21})
    assert execution["outputs"]["y"] == 42
    endpoint = sdk_a.create_deployment(pipeline_name="double-a", deployment_name="double-a-endpoint",
                                       execution_rule="endpoint", inputs_mapping=[], outputs_mapping=[])

    assert "double-a" not in [p["pipeline_name"] for p in sdk_b.list_pipelines()]
    assert "double-a-endpoint" not in [d["name"] for d in sdk_b.list_deployments()]
    for call in (lambda: sdk_b.get_pipeline("double-a"),
                 lambda: sdk_b.run_pipeline("double-a", inputs={"x": 1}),
                 lambda: sdk_b.get_deployment("double-a-endpoint"),
                 lambda: sdk_b.delete_pipeline("double-a", force_deployments_deletion=True),
                 lambda: sdk_b.get_pipeline_execution(execution["execution_id"])):
        with pytest.raises(SdkException) as refused:
            call()
        assert refused.value.status_code == 404
    assert sdk_a.get_pipeline("double-a")["creation_info"]["status"] == "ready"

    # the endpoint token is a credential like any other: listed (with its workspace) and revoked at once
    assert sdk_a.trigger_endpoint("double-a-endpoint", endpoint["endpoint_token"], inputs={"x": 1})["outputs"]["y"] == 2
    listed = httpx.get(f"{server.url}/modelport/v1/credentials?kind=craftai-endpoint", headers=server.headers).json()
    token = next(c for c in listed["credentials"] if c["id"] == "craftai-endpoint:double-a-endpoint")
    assert token["workspace_id"] == a["workspace"] and token["last_used_at"] is not None
    assert endpoint["endpoint_token"] not in str(listed)
    assert httpx.delete(f"{server.url}/modelport/v1/credentials/{token['id']}", headers=server.headers).status_code == 200
    refused = httpx.post(f"{server.url}/endpoints/double-a-endpoint", json={"x": 1},
                         headers={"Authorization": f"EndpointToken {endpoint['endpoint_token']}"})
    assert refused.status_code == 403
