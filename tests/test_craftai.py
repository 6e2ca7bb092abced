"""The Craft AI face with the unmodified craft-ai-sdk against a real server: pipelines from a code folder,
endpoint and periodic deployments, executions in real processes, logs and datastore outputs."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from craft_ai_sdk import CraftAiSdk, InputSource, OutputDestination
from craft_ai_sdk.exceptions import SdkException
from craft_ai_sdk.io import Input, Output

from tests.support import Server

pytestmark = pytest.mark.database

FUNCTION = '''
import os

def predict(sepal_length, petal_length, scale=1.0, label="iris"):
    print(f"scoring {sepal_length} {petal_length}")
    scale = 1.0 if scale is None else scale  # a null input (is_null mapping) arrives as None
    if sepal_length < 0:
        raise ValueError("sepal_length must not be negative")
    return {"score": (sepal_length * 0.5 + petal_length) * scale, "label": label.upper(),
            "execution": os.environ["CRAFT_AI_EXECUTION_ID"]}
'''


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"MODELPORT_ALLOW_SECOND_SCHEDULES": "1"}


@pytest.fixture(scope="module")
def sdk(server: Server) -> CraftAiSdk:
    return CraftAiSdk(sdk_token=server.token, environment_url=server.url, control_url=server.url, verbose_log=False)


@pytest.fixture(scope="module")
def pipeline(sdk: CraftAiSdk, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("craft-code")
    (folder / "src").mkdir()
    (folder / "src" / "model.py").write_text(FUNCTION)
    created = sdk.create_pipeline(
        pipeline_name="iris-score", function_path="src/model.py", function_name="predict",
        description="scores an iris", container_config={"local_folder": str(folder)},
        inputs=[Input("sepal_length", "number"), Input("petal_length", "number"),
                Input("scale", "number", is_required=False), Input("label", "string", is_required=False)],
        outputs=[Output("score", "number"), Output("label", "string"), Output("execution", "string")])
    assert created["creation_info"]["status"] == "ready"
    assert created["parameters"]["function_name"] == "predict"
    return "iris-score"


def test_endpoint_deployment_auto_mapping_returns_the_functions_outputs(sdk, pipeline, server: Server) -> None:
    deployment = sdk.create_deployment(pipeline_name=pipeline, deployment_name="iris-auto",
                                       execution_rule="endpoint", outputs_mapping=[], inputs_mapping=[])
    assert deployment["name"] == "iris-auto" and len(deployment["endpoint_token"]) >= 32
    assert deployment["execution_rule"] == "endpoint" and deployment["status"] == "up"
    result = sdk.trigger_endpoint("iris-auto", deployment["endpoint_token"],
                                  inputs={"sepal_length": 6.0, "petal_length": 4.0})
    assert result["outputs"]["score"] == 7.0 and result["outputs"]["label"] == "IRIS"
    assert result["outputs"]["execution"] == result["execution_id"]
    execution = sdk.get_pipeline_execution(result["execution_id"])
    assert execution["status"] == "Succeeded"
    assert {i["pipeline_input_name"]: i["value"] for i in execution["inputs"]}["sepal_length"] == 6.0
    logs = sdk.get_pipeline_execution_logs(result["execution_id"])
    assert any("scoring 6.0 4.0" in line["message"] for line in logs)

    # wrong or missing endpoint tokens, a missing required input, a function that raises
    url = f"{server.url}/endpoints/iris-auto"
    assert httpx.post(url, json={"sepal_length": 1, "petal_length": 1}).status_code == 401
    assert httpx.post(url, json={"sepal_length": 1, "petal_length": 1},
                      headers={"Authorization": "EndpointToken not-the-token-at-all"}).status_code == 403
    missing = httpx.post(url, json={"sepal_length": 1}, headers={"Authorization": f"EndpointToken "
                                                                               f"{deployment['endpoint_token']}"})
    assert missing.status_code == 400 and "petal_length" in missing.json()["message"]
    with pytest.raises(SdkException, match="sepal_length must not be negative"):
        sdk.trigger_endpoint("iris-auto", deployment["endpoint_token"],
                             inputs={"sepal_length": -1.0, "petal_length": 4.0})
    failed = sdk.get_pipeline_execution(sdk.get_deployment("iris-auto")["last_execution_id"])
    assert failed["status"] == "Failed"
    trace = sdk.get_pipeline_execution_logs(failed["execution_id"])
    assert any("Traceback" in line["message"] for line in trace)
    assert any("ValueError: sepal_length must not be negative" in line["message"] for line in trace)


def test_endpoint_deployment_with_manual_mapping_and_low_latency(sdk, pipeline) -> None:
    sdk.create_or_update_environment_variable("IRIS_LABEL", "setosa")
    deployment = sdk.create_deployment(
        pipeline_name=pipeline, deployment_name="iris-manual", execution_rule="endpoint", mode="low_latency",
        inputs_mapping=[InputSource(pipeline_input_name="sepal_length", endpoint_input_name="sepal"),
                        InputSource(pipeline_input_name="scale", constant_value=10),
                        InputSource(pipeline_input_name="label", environment_variable_name="IRIS_LABEL")],
        outputs_mapping=[OutputDestination(pipeline_output_name="score", endpoint_output_name="prediction"),
                         OutputDestination(pipeline_output_name="execution", is_null=True)])
    assert deployment["mode"] == "low_latency" and deployment["status"] == "up"
    token = deployment["endpoint_token"]
    first = sdk.trigger_endpoint("iris-manual", token, inputs={"sepal": 2.0, "petal_length": 1.0})
    second = sdk.trigger_endpoint("iris-manual", token, inputs={"sepal": 4.0, "petal_length": 1.0})
    assert first["outputs"] == {"prediction": 20.0, "label": "SETOSA"}
    assert second["outputs"]["prediction"] == 30.0


def test_periodic_deployment_runs_on_schedule_and_writes_the_datastore(sdk, pipeline) -> None:
    with pytest.raises(SdkException, match="not mapped"):
        sdk.create_deployment(pipeline_name=pipeline, deployment_name="iris-bad-periodic",
                              execution_rule="periodic", schedule="*/2 * * * *")
    with pytest.raises(SdkException, match="schedule"):
        sdk.create_deployment(pipeline_name=pipeline, deployment_name="iris-bad-cron", execution_rule="periodic",
                              schedule="every minute", inputs_mapping=[], outputs_mapping=[])
    mappings = dict(
        inputs_mapping=[InputSource(pipeline_input_name="sepal_length", constant_value=1.0),
                        InputSource(pipeline_input_name="petal_length", constant_value=2.0),
                        InputSource(pipeline_input_name="scale", is_null=True),
                        InputSource(pipeline_input_name="label", constant_value="tick")],
        outputs_mapping=[OutputDestination(pipeline_output_name="score",
                                           datastore_path="runs/{execution_id}/score.json"),
                         OutputDestination(pipeline_output_name="label", datastore_path="runs/{date}/label.txt"),
                         OutputDestination(pipeline_output_name="execution", is_null=True)])
    human = sdk.create_deployment(pipeline_name=pipeline, deployment_name="iris-every-2-min",
                                  execution_rule="periodic", schedule="*/2 * * * *", **mappings)
    assert human["schedule"] == "*/2 * * * *" and human["human_readable_schedule"] == "Every 2 minutes"
    sdk.delete_deployment("iris-every-2-min")

    sdk.create_deployment(pipeline_name=pipeline, deployment_name="iris-periodic", execution_rule="periodic",
                          schedule="* * * * * */1", **mappings)
    deadline = time.monotonic() + 30
    finished = []
    while len(finished) < 2:
        assert time.monotonic() < deadline, "the periodic deployment did not produce two executions in time"
        executions = [e for e in sdk.list_pipeline_executions(pipeline) if e["deployment_name"] == "iris-periodic"]
        finished = [e for e in executions if e["status"] in ("Succeeded", "Failed")]
        time.sleep(0.3)
    sdk.update_deployment("iris-periodic", is_enabled=False)
    for execution in finished[:2]:
        assert execution["status"] == "Succeeded", execution
        logs = sdk.get_pipeline_execution_logs(execution["execution_id"])
        assert any("scoring 1.0 2.0" in line["message"] for line in logs)
    paths = {item["path"] for item in sdk.list_data_store_objects("runs")}
    assert f"runs/{finished[0]['execution_id']}/score.json" in paths
    target = Path(sdk.list_data_store_objects("runs")[0]["path"]).name
    out = Path(pytest.importorskip("tempfile").mkdtemp()) / target
    sdk.download_data_store_object(f"runs/{finished[0]['execution_id']}/score.json", str(out))
    assert out.read_text() == "2.5"


def test_run_pipeline_and_bad_requests(sdk, pipeline, server: Server) -> None:
    result = sdk.run_pipeline(pipeline, inputs={"sepal_length": 2.0, "petal_length": 0.5})
    assert result["outputs"]["score"] == 1.5
    assert pipeline in [p["pipeline_name"] for p in sdk.list_pipelines()]
    headers = {"Authorization": f"Bearer {server.token}"}
    api = f"{server.url}/api/v1"
    assert httpx.get(f"{api}/pipelines").status_code == 401
    assert httpx.get(f"{api}/pipelines", headers={"Authorization": "Bearer a.b.c"}).status_code == 401
    assert httpx.post(f"{api}/auth/refresh", json={"refresh_token": "nope"}).status_code == 401
    assert httpx.get(f"{api}/pipelines/nope", headers=headers).status_code == 404
    assert httpx.get(f"{api}/executions/nope", headers=headers).status_code == 404
    bad = httpx.post(f"{api}/endpoints", headers=headers, json={"pipeline_name": pipeline, "name": "Bad Name"})
    assert bad.status_code == 400 and set(bad.json()) >= {"message", "name", "request_id"}
    assert httpx.post(f"{api}/pipelines", headers=headers, json={}).status_code == 415
    form = {"pipeline_name": "broken", "function_path": "x.py", "function_name": "f"}
    assert httpx.post(f"{api}/pipelines", headers=headers, data=form,
                      files={"step_file": ("c.tgz", b"not a tarball")}).status_code == 400
    assert httpx.post(f"{api}/pipelines", headers=headers, data={**form, "function_path": "../x.py"},
                      files={"step_file": ("c.tgz", b"x")}).status_code == 400
    assert httpx.request("DELETE", f"{api}/pipelines/{pipeline}", headers=headers).status_code == 409
    assert sdk.get_pipeline(pipeline)["creation_info"]["status"] == "ready"
