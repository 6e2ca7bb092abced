"""Live deployments against a real server with real models in replica processes."""

from __future__ import annotations

import io
import os
import signal
import threading
import time

import httpx
import joblib
import numpy as np
import orjson
import onnxruntime as ort
import pyarrow as pa
import pytest
import xgboost

from tests.support import (
    SEED_DENSE_INPUT, Server, build_ccfraud_onnx, build_sklearn_classifier, build_xgboost_regressor, create_pipeline,
    deploy, infer_records, upload_model, wait_status,
)


@pytest.fixture(scope="module")
def workspace(server: Server) -> int:
    return server.post("/v1/api/workspaces/create", {"workspace_name": "serving"}).json()["workspace_id"]


@pytest.fixture(scope="module")
def ccfraud(server: Server, workspace: int, model_dir) -> dict:
    path = build_ccfraud_onnx(model_dir / "ccfraud-serving.onnx")
    return {"path": path, **upload_model(server, workspace, "ccfraud", path, "onnx")}


def onnx_direct(path, rows: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"dense_input": rows.astype(np.float32)})[0]


def test_seed_flow_end_to_end(server: Server, workspace: int, ccfraud: dict) -> None:
    pipeline = create_pipeline(server, workspace, "api-pipeline-with-models", [ccfraud])
    deployment_id = deploy(server, "api-pipeline-with-models", pipeline)
    name = f"api-pipeline-with-models-{deployment_id}"
    status = wait_status(server, name)
    assert set(status) == {"status", "details", "engines", "engine_lbs", "sidekicks"}
    engine = status["engines"][0]
    assert engine["status"] == "Running"
    assert engine["pipeline_statuses"] == {"pipelines": [{"id": "api-pipeline-with-models", "status": "Running"}]}
    assert engine["model_statuses"]["models"][0]["sha"] == ccfraud["sha"]

    url = server.post("/v1/api/admin/get_pipeline_external_url",
                      {"workspace_id": workspace, "pipeline_name": "api-pipeline-with-models"}).json()["url"]
    assert url == f"{server.url}/v1/api/pipelines/infer/{name}/api-pipeline-with-models"
    expected = float(onnx_direct(ccfraud["path"], np.array([SEED_DENSE_INPUT]))[0][0])

    # pandas-records, the seed's exact payload
    headers = {**server.headers, "Content-Type": "application/json; format=pandas-records"}
    reply = httpx.post(url, json=[{"dense_input": SEED_DENSE_INPUT}], headers=headers)
    assert reply.status_code == 200, reply.text
    record = reply.json()[0]
    assert set(record) == {"time", "in", "out", "check_failures", "metadata"}
    assert list(record["out"]) == ["dense_1"] and len(record["out"]["dense_1"]) == 1
    assert record["out"]["dense_1"][0] == pytest.approx(expected, rel=1e-6)
    assert set(record["metadata"]) == {"last_model", "pipeline_version", "elapsed", "dropped", "partition"}
    assert record["metadata"]["pipeline_version"] == pipeline["pipeline_variant_version"]
    # the SDK's dataset parameters
    reply = httpx.post(url + "?dataset[]=*&dataset.exclude[]=metadata&dataset.separator=.",
                       json=[{"dense_input": SEED_DENSE_INPUT}], headers=headers)
    assert "metadata" not in reply.json()[0] and reply.json()[0]["out"]["dense_1"][0] == pytest.approx(expected, rel=1e-6)

    # Arrow IPC file in and out
    table = pa.table({"dense_input": pa.array([SEED_DENSE_INPUT, SEED_DENSE_INPUT], type=pa.list_(pa.float64(), 29))})
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    reply = httpx.post(url, content=sink.getvalue(), headers={
        **server.headers, "Content-Type": "application/vnd.apache.arrow.file", "Accept": "application/vnd.apache.arrow.file"})
    assert reply.status_code == 200, reply.text
    answer = pa.ipc.open_file(pa.BufferReader(reply.content)).read_all()
    assert {"time", "in.dense_input", "out.dense_1", "metadata.partition"} <= set(answer.column_names)
    assert answer.num_rows == 2
    assert answer.column("out.dense_1").to_pylist()[0][0] == pytest.approx(expected, rel=1e-6)

    # Open Inference Protocol V2 with the unmodified tritonclient
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    auth = {"Authorization": f"Bearer {server.token}"}
    assert client.is_server_live() and client.is_model_ready("api-pipeline-with-models", headers=auth)
    metadata = client.get_model_metadata("api-pipeline-with-models", headers=auth)
    assert metadata["inputs"][0]["name"] == "dense_input"
    tensor = triton.InferInput("dense_input", [1, 29], "FP32")
    tensor.set_data_from_numpy(np.array([SEED_DENSE_INPUT], dtype=np.float32))
    result = client.infer("api-pipeline-with-models", [tensor], headers=auth)
    assert result.as_numpy("dense_1")[0][0] == pytest.approx(expected, rel=1e-6)

    # undeploy: status and inference answer 404
    reply = server.post("/v1/api/pipelines/undeploy",
                        {"pipeline_id": pipeline["pipeline_pk_id"], "deployment_id": deployment_id})
    assert reply.status_code == 200 and reply.json() is None
    assert server.post("/v1/api/status/get_deployment", {"name": name}).status_code == 404
    assert httpx.post(url, json=[{"dense_input": SEED_DENSE_INPUT}], headers=headers).status_code == 404
    assert server.post("/v1/api/pipelines/undeploy",
                       {"pipeline_id": pipeline["pipeline_pk_id"], "deployment_id": deployment_id}).status_code == 404


def test_sklearn_xgboost_and_two_steps_match_direct_calls(server: Server, workspace: int, ccfraud: dict,
                                                          model_dir) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LinearRegression

    iris_path = build_sklearn_classifier(model_dir / "iris-serving.joblib")
    xgb_path = build_xgboost_regressor(model_dir / "xgb-serving.json")
    second_path = model_dir / "second-step.joblib"
    joblib.dump(LinearRegression().fit(np.array([[0.0], [1.0]]), np.array([10.0, 20.0])), second_path)
    iris = upload_model(server, workspace, "iris", iris_path, "sklearn")
    xgb = upload_model(server, workspace, "xgb", xgb_path, "xgboost")
    second = upload_model(server, workspace, "rescale", second_path, "sklearn")
    deployments = {}
    for name, steps in (("iris-p", [iris]), ("xgb-p", [xgb]), ("two-steps", [ccfraud, second])):
        pipeline = create_pipeline(server, workspace, name, steps)
        deployments[name] = f"{name}-{deploy(server, name, pipeline)}"
    for name in deployments.values():
        wait_status(server, name)

    x, _ = load_iris(return_X_y=True)
    rows = x[[0, 60, 120]]
    model = joblib.load(iris_path)
    reply = infer_records(server, deployments["iris-p"], "iris-p", [{"features": list(r)} for r in rows])
    assert reply.status_code == 200, reply.text
    assert [r["out"]["predictions"] for r in reply.json()] == model.predict(rows).tolist()
    assert np.allclose([r["out"]["probabilities"] for r in reply.json()], model.predict_proba(rows))

    features = np.random.default_rng(1).normal(size=(5, 4))
    booster = xgboost.Booster()
    booster.load_model(str(xgb_path))
    reply = infer_records(server, deployments["xgb-p"], "xgb-p", [{"x": list(r)} for r in features])
    assert reply.status_code == 200, reply.text
    assert np.allclose([r["out"]["predictions"] for r in reply.json()],
                       booster.predict(xgboost.DMatrix(features)), rtol=1e-5)

    inputs = np.random.default_rng(2).normal(size=(3, 29))
    expected = joblib.load(second_path).predict(onnx_direct(ccfraud["path"], inputs))
    reply = infer_records(server, deployments["two-steps"], "two-steps", [{"dense_input": list(r)} for r in inputs])
    assert reply.status_code == 200, reply.text
    assert np.allclose([r["out"]["predictions"] for r in reply.json()], expected, rtol=1e-5)
    assert '"model_name":"rescale"' in reply.json()[0]["metadata"]["last_model"]


def test_bad_inference_input_is_a_4xx_and_the_deployment_keeps_serving(server: Server, workspace: int,
                                                                       ccfraud: dict) -> None:
    pipeline = create_pipeline(server, workspace, "guarded", [ccfraud])
    name = f"guarded-{deploy(server, 'guarded', pipeline)}"
    wait_status(server, name)
    url = f"{server.url}/v1/api/pipelines/infer/{name}/guarded"
    records = {**server.headers, "Content-Type": "application/json; format=pandas-records"}
    cases = [
        (b'[{"wrong": [1, 2]}]', records, "dense_input"),
        (b'[{"dense_input": [1, 2, 3]}]', records, "dense_input"),
        (b'[{"dense_input": ["a", "b"]}]', records, "dense_input"),
        (b'[{"dense_input": [1, 2]}, {"dense_input": [1]}]', records, "dense_input"),
        (b"{not json", records, None),
        (b"garbage", {**server.headers, "Content-Type": "application/vnd.apache.arrow.file"}, None),
        (b"x=1", {**server.headers, "Content-Type": "application/x-www-form-urlencoded"}, None),
    ]
    for body, headers, field in cases:
        reply = httpx.post(url, content=body, headers=headers)
        assert 400 <= reply.status_code < 500, (body, reply.status_code, reply.text)
        assert "msg" in reply.json()
        if field:
            assert reply.json().get("field") == field, (body, reply.json())
    v2 = httpx.post(f"{server.url}/v2/models/guarded/infer", headers=server.headers,
                    json={"inputs": [{"name": "dense_input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]})
    assert v2.status_code == 400 and "error" in v2.json()
    tensor = {"name": "dense_input", "shape": [1, 29], "datatype": "FP32", "data": SEED_DENSE_INPUT}
    for hostile in ({"inputs": [tensor], "parameters": [1]}, {"inputs": [{**tensor, "parameters": "x"}]},
                    {"inputs": [tensor], "outputs": "dense_1"}, {"inputs": [tensor], "outputs": [{"name": 3}]},
                    {"inputs": [tensor], "id": {"a": 1}}, {"inputs": [{**tensor, "shape": [1, True]}]}, [tensor]):
        reply = httpx.post(f"{server.url}/v2/models/guarded/infer", headers=server.headers, json=hostile)
        assert reply.status_code == 400 and "error" in reply.json(), (hostile, reply.text)
    assert httpx.post(f"{server.url}/v2/models/nope/infer", headers=server.headers, json={}).status_code == 404
    assert httpx.post(url, json=[{"dense_input": SEED_DENSE_INPUT}], headers={"Content-Type": "application/json"}
                      ).status_code == 401
    assert infer_records(server, name, "guarded", [{"dense_input": SEED_DENSE_INPUT}]).status_code == 200
    bad_deploy = server.post("/v1/api/pipelines/deploy", {"deploy_id": "guarded", "pipeline_id": pipeline["pipeline_pk_id"],
                                                          "pipeline_version_pk_id": 999999})
    assert bad_deploy.status_code == 404
    bad_config = server.post("/v1/api/pipelines/deploy", {
        "deploy_id": "guarded", "pipeline_id": pipeline["pipeline_pk_id"],
        "pipeline_version_pk_id": pipeline["pipeline_variant_pk_id"],
        "engine_config": {"engine": {"autoscale": {"replica_min": 3, "replica_max": 1}}}})
    assert bad_config.status_code == 400
    assert wait_status(server, name)["status"] == "Running"
    assert infer_records(server, name, "guarded", [{"dense_input": SEED_DENSE_INPUT}]).status_code == 200


def test_redeploy_under_load_drops_nothing_and_switches_version(server: Server, workspace: int, ccfraud: dict,
                                                                model_dir) -> None:
    pipeline = create_pipeline(server, workspace, "rolling", [ccfraud])
    deployment_id = deploy(server, "rolling", pipeline)
    name = f"rolling-{deployment_id}"
    first_engines = {e["name"] for e in wait_status(server, name)["engines"]}
    newer_path = build_ccfraud_onnx(model_dir / "ccfraud-v2.onnx", seed=99)
    newer = upload_model(server, workspace, "ccfraud", newer_path, "onnx")
    stop = threading.Event()
    statuses: list[int] = []
    shas: list[str] = []

    def client() -> None:
        with httpx.Client(headers={**server.headers, "Content-Type": "application/json; format=pandas-records"},
                          timeout=60) as http:
            while not stop.is_set():
                reply = http.post(f"{server.url}/v1/api/pipelines/infer/{name}/rolling",
                                  json=[{"dense_input": SEED_DENSE_INPUT}])
                statuses.append(reply.status_code)
                if reply.status_code == 200:
                    shas.append(reply.json()[0]["metadata"]["last_model"])

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    version2 = create_pipeline(server, workspace, "rolling", [newer])
    assert deploy(server, "rolling", version2) == deployment_id
    deadline = time.monotonic() + 90
    while newer["sha"] not in (shas[-1] if shas else "") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    assert statuses and all(s == 200 for s in statuses), {s for s in statuses}
    assert ccfraud["sha"] in shas[0] and newer["sha"] in shas[-1]
    status = wait_status(server, name)
    assert {e["pipeline_version"] for e in status["engines"]} == {version2["pipeline_variant_version"]}
    assert not first_engines & {e["name"] for e in status["engines"]}, "a new replica reused an old replica's name"


def test_a_killed_replica_is_restarted(server: Server, workspace: int, ccfraud: dict) -> None:
    pipeline = create_pipeline(server, workspace, "fragile", [ccfraud])
    name = f"fragile-{deploy(server, 'fragile', pipeline)}"
    status = wait_status(server, name)
    pid = int(status["engines"][0]["details"][0].split()[-1])
    os.kill(pid, signal.SIGKILL)
    seen = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = server.post("/v1/api/status/get_deployment", {"name": name}).json()
        seen.add(status["status"])
        engine = status["engines"][0]
        if engine["status"] == "Running" and engine["details"] and engine["details"][0] != f"pid {pid}":
            break
        time.sleep(0.02)
    assert seen - {"Running"}, "the status never showed the dead replica"
    assert status["status"] == "Running" and engine["details"][0] != f"pid {pid}"
    assert infer_records(server, name, "fragile", [{"dense_input": SEED_DENSE_INPUT}]).status_code == 200


def test_scale_to_zero_and_back(server: Server, workspace: int, ccfraud: dict) -> None:
    pipeline = create_pipeline(server, workspace, "sleepy", [ccfraud])
    config = {"engine": {"replicas": 1, "autoscale": {"replica_min": 0, "replica_max": 1, "scale_down_idle_s": 2}}}
    name = f"sleepy-{deploy(server, 'sleepy', pipeline, config)}"
    status = wait_status(server, name)
    pid = int(status["engines"][0]["details"][0].split()[-1])
    deadline = time.monotonic() + 30
    while server.post("/v1/api/status/get_deployment", {"name": name}).json()["engines"]:
        assert time.monotonic() < deadline, "never scaled to zero"
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        for _ in range(100):
            os.kill(pid, 0)  # the replica process is gone (reaped)
            time.sleep(0.05)
    reply = infer_records(server, name, "sleepy", [{"dense_input": SEED_DENSE_INPUT}])
    assert reply.status_code == 200, reply.text
    assert len(server.post("/v1/api/status/get_deployment", {"name": name}).json()["engines"]) == 1


@pytest.mark.database  # written straight to the driver: SQLite text timestamps, PostgreSQL JSON casts
def test_inference_logs_are_kept(server: Server, workspace: int, ccfraud: dict) -> None:
    pipeline = create_pipeline(server, workspace, "logged", [ccfraud])
    name = f"logged-{deploy(server, 'logged', pipeline)}"
    wait_status(server, name)
    for _ in range(3):
        assert infer_records(server, name, "logged", [{"dense_input": SEED_DENSE_INPUT}]).status_code == 200
    logs = server.post("/v1/api/pipelines/get_logs", {"pipeline_name": "logged", "workspace_id": workspace}).json()
    assert len(logs["logs"]) == 3
    entry = logs["logs"][0]
    assert entry["in"]["dense_input"][0] == pytest.approx(SEED_DENSE_INPUT)
    assert entry["pipeline_version"] == pipeline["pipeline_variant_version"] and entry["elapsed_ns"] > 0
    assert abs(entry["time"] / 1000 - time.time()) < 120  # stored as UTC and read back as UTC
    assert entry["out"] and entry["rows"] == 1


@pytest.mark.database
def test_running_deployments_come_back_after_a_restart(tmp_path, fresh_database_url, model_dir) -> None:
    srv = Server(tmp_path / "home", database_url=fresh_database_url).start()
    try:
        ws = srv.post("/v1/api/workspaces/create", {"workspace_name": "restart"}).json()["workspace_id"]
        model = upload_model(srv, ws, "ccfraud", build_ccfraud_onnx(model_dir / "restart.onnx"), "onnx")
        pipeline = create_pipeline(srv, ws, "durable", [model])
        name = f"durable-{deploy(srv, 'durable', pipeline)}"
        wait_status(srv, name)
        srv.restart()
        wait_status(srv, name)
        assert infer_records(srv, name, "durable", [{"dense_input": SEED_DENSE_INPUT}]).status_code == 200
    finally:
        srv.stop()


REQUIREMENTS_MODEL = b'''
import humanize
import pandas as pd


class Pretty:
    """Uses a package that only its own requirements.txt provides."""

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"pretty": [humanize.intcomma(int(v)) for v in frame["amount"]],
                             "doubled": frame["amount"] * 2})
'''


def test_python_model_with_its_own_requirements(server: Server, workspace: int, model_dir) -> None:
    import zipfile

    archive = model_dir / "pretty.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("main.py", REQUIREMENTS_MODEL)
        z.writestr("requirements.txt", "humanize>=4\n")
    model = upload_model(server, workspace, "pretty", archive, "python")
    deadline = time.monotonic() + 180
    while True:
        version = server.post("/v1/api/models/get_version_by_id",
                              {"model_version_id": model["id"]}).json()["model_version"]["model_version"]
        if version["status"] in ("ready", "error") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert version["status"] == "ready", version
    pipeline = create_pipeline(server, workspace, "pretty", [model])
    name = f"pretty-{deploy(server, 'pretty', pipeline)}"
    wait_status(server, name, timeout=180)
    reply = infer_records(server, name, "pretty", [{"amount": 1234567}, {"amount": 42}])
    assert reply.status_code == 200, reply.text
    assert [r["out"]["pretty"] for r in reply.json()] == ["1,234,567", "42"]
    assert [r["out"]["doubled"] for r in reply.json()] == [2469134, 84]


def test_a_model_that_cannot_load_puts_the_deployment_in_error(server: Server, workspace: int, model_dir) -> None:
    broken = model_dir / "broken-serving.onnx"
    broken.write_bytes(b"definitely not onnx" * 20)
    model = upload_model(server, workspace, "broken", broken, "onnx")
    pipeline = create_pipeline(server, workspace, "broken-p", [model])
    name = f"broken-p-{deploy(server, 'broken-p', pipeline)}"
    status = wait_status(server, name, wanted=("Error",))
    reasons = " ".join([*status["details"], *(e["reason"] or "" for e in status["engines"])])
    assert "onnx" in reasons.lower() or "protobuf" in reasons.lower() or "load" in reasons.lower(), status
    reply = infer_records(server, name, "broken-p", [{"dense_input": SEED_DENSE_INPUT}])
    assert reply.status_code == 503 and "msg" in reply.json()


def test_queue_depth_scales_up_and_copy_can_deploy(server: Server, workspace: int, ccfraud: dict) -> None:
    source = create_pipeline(server, workspace, "busy-source", [ccfraud])
    config = {"engine": {"replicas": 1, "autoscale": {"replica_min": 1, "replica_max": 2, "scale_down_idle_s": 600},
                         "batch": {"max_batch_size": 64}}}
    copied = server.post("/v1/api/pipelines/copy", {"name": "busy", "workspace_id": workspace,
                                                    "source_pipeline": source["pipeline_pk_id"], "deploy": "busy",
                                                    "engine_config": config}).json()
    name = copied["deployment"]["name"]
    wait_status(server, name)
    stop = threading.Event()
    rows = [{"dense_input": SEED_DENSE_INPUT}] * 200

    def client() -> None:
        with httpx.Client(headers={**server.headers, "Content-Type": "application/json; format=pandas-records"},
                          timeout=60) as http:
            while not stop.is_set():
                assert http.post(f"{server.url}/v1/api/pipelines/infer/{name}/busy", json=rows).status_code == 200

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    try:
        while len(server.post("/v1/api/status/get_deployment", {"name": name}).json()["engines"]) < 2:
            assert time.monotonic() < deadline, "never scaled up"
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert wait_status(server, name)["status"] == "Running"
    metrics = httpx.get(f"{server.url}/metrics", headers=server.headers).text
    assert f'modelport_inference_requests_total{{deployment="{name}",outcome="success"}}' in metrics
    assert f'modelport_replicas{{deployment="{name}",state="Running",variant="main"}} 2.0' in metrics
    assert "modelport_batch_rows_bucket" in metrics
    assert httpx.get(f"{server.url}/metrics").status_code == 401


def test_copy_with_a_bad_deploy_creates_nothing(server: Server, workspace: int, ccfraud: dict) -> None:
    source = create_pipeline(server, workspace, "copy-source", [ccfraud])
    empty = server.post("/v1/api/pipelines/create", {"pipeline_id": "copy-empty", "workspace_id": workspace,
                                                      "definition": {}}).json()
    before = len(server.post("/v1/api/pipelines/list", {}).json()["pipelines"])
    for body in (
        {"name": "copy-a", "source_pipeline": source["pipeline_pk_id"], "deploy": "other-name"},
        {"name": "copy-b", "source_pipeline": source["pipeline_pk_id"], "deploy": "copy-b",
         "engine_config": {"engine": {"replicas": -1}}},
        {"name": "copy-c", "source_pipeline": empty["pipeline_pk_id"], "deploy": "copy-c"},
    ):
        reply = server.post("/v1/api/pipelines/copy", {"workspace_id": workspace, **body})
        assert reply.status_code == 400, reply.text
    assert len(server.post("/v1/api/pipelines/list", {}).json()["pipelines"]) == before


def test_wallaroo_json_format_and_v2_versions(server: Server, workspace: int, ccfraud: dict) -> None:
    pipeline = create_pipeline(server, workspace, "formats", [ccfraud])
    name = f"formats-{deploy(server, 'formats', pipeline)}"
    wait_status(server, name)
    version = pipeline["pipeline_variant_version"]
    expected = infer_records(server, name, "formats", [{"dense_input": SEED_DENSE_INPUT}]).json()[0]["out"]["dense_1"]
    reply = httpx.post(f"{server.url}/v1/api/pipelines/infer/{name}/formats", json={"dense_input": [SEED_DENSE_INPUT]},
                       headers={**server.headers, "Content-Type": "application/json; format=wallaroo"})
    assert reply.status_code == 200 and reply.json()[0]["out"]["dense_1"] == expected

    base = f"{server.url}/v2/models/formats/versions/{version}"
    assert httpx.get(f"{base}/ready", headers=server.headers).json() == {"name": "formats", "ready": True}
    assert httpx.get(base, headers=server.headers).json()["versions"] == [version]
    body = {"id": "req-1", "inputs": [{"name": "dense_input", "shape": [1, 29], "datatype": "FP64",
                                       "data": SEED_DENSE_INPUT}]}
    reply = httpx.post(f"{base}/infer", json=body, headers=server.headers).json()
    assert reply["id"] == "req-1" and reply["model_version"] == version
    assert reply["outputs"][0]["data"] == pytest.approx(expected)
    missing = httpx.post(f"{server.url}/v2/models/formats/versions/00000000-0000-0000-0000-000000000000/infer",
                         json=body, headers=server.headers)
    assert missing.status_code == 404 and "error" in missing.json()
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}


def test_undeploy_while_starting_leaves_no_process(server: Server, workspace: int, ccfraud: dict) -> None:
    import subprocess

    pipeline = create_pipeline(server, workspace, "hasty", [ccfraud])
    deployment_id = deploy(server, "hasty", pipeline)
    reply = server.post("/v1/api/pipelines/undeploy",
                        {"pipeline_id": pipeline["pipeline_pk_id"], "deployment_id": deployment_id})
    assert reply.status_code == 200
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-f", f"engine-hasty-{deployment_id}-"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "a replica of the undeployed deployment is still running"
        time.sleep(0.2)
    time.sleep(2)  # the start that was under way has finished by now; still nothing may run
    assert subprocess.run(["pgrep", "-f", f"engine-hasty-{deployment_id}-"], capture_output=True).returncode != 0
    assert server.post("/v1/api/status/get_deployment", {"name": f"hasty-{deployment_id}"}).status_code == 404


def _http_exchange(server: Server, raw: bytes, responses: int, *, pause_after: int | None = None) -> list[bytes]:
    """Send raw HTTP/1.1 bytes on one connection and read `responses` complete responses (Content-Length framed)."""
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        if pause_after is None:
            sock.sendall(raw)
        else:  # the headers first, the body only once the server said "100 Continue"
            sock.sendall(raw[:pause_after])
            assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(raw[pause_after:])
        buffer, replies = b"", []
        while len(replies) < responses:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                if len(rest) < length:
                    break
                replies.append(head + b"\r\n\r\n" + rest[:length])
                buffer = rest[length:]
        return replies


def test_inference_over_raw_http_pipelining_chunks_and_100_continue(server: Server, workspace: int,
                                                                    ccfraud: dict) -> None:
    """The inference routes are answered straight from uvicorn's request cycle: HTTP/1.1 must work as it does
    everywhere else (pipelined requests in order, chunked bodies, Expect: 100-continue, Connection: close)."""
    pipeline = create_pipeline(server, workspace, "wire", [ccfraud])
    wait_status(server, f"wire-{deploy(server, 'wire', pipeline)}")
    rows = np.random.default_rng(5).normal(size=(2, 29))
    expected = onnx_direct(ccfraud["path"], rows)

    def request(row: np.ndarray, extra: bytes = b"", *, chunked: bool = False, **fields: object) -> bytes:
        body = orjson.dumps({"inputs": [{"name": "dense_input", "shape": [1, 29], "datatype": "FP64",
                                         "data": row.tolist()}], **fields})
        head = (b"POST /v2/models/wire/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + server.token.encode() + b"\r\n" + extra)
        if chunked:
            half = len(body) // 2
            return head + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
                b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:])) + b"0\r\n\r\n"
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body

    def prediction(reply: bytes) -> float:
        assert reply.startswith(b"HTTP/1.1 200 "), reply
        return orjson.loads(reply.partition(b"\r\n\r\n")[2])["outputs"][0]["data"][0]

    first, second = _http_exchange(server, request(rows[0]) + request(rows[1]), 2)  # pipelined: in order
    assert np.allclose([prediction(first), prediction(second)], expected.ravel(), rtol=1e-5)
    (chunked,) = _http_exchange(server, request(rows[1], chunked=True), 1)
    assert np.isclose(prediction(chunked), expected[1, 0], rtol=1e-5)
    raw = request(rows[0], b"Expect: 100-continue\r\n")
    (continued,) = _http_exchange(server, raw, 1, pause_after=raw.index(b"\r\n\r\n") + 4)
    assert np.isclose(prediction(continued), expected[0, 0], rtol=1e-5)
    (closing,) = _http_exchange(server, request(rows[0], b"Connection: close\r\n"), 1)
    assert b"\r\nconnection: close\r\n" in closing.lower() and np.isclose(prediction(closing), expected[0, 0], rtol=1e-5)
    (refused,) = _http_exchange(server, request(rows[0]).replace(server.token.encode(), b"wrong"), 1)
    assert refused.startswith(b"HTTP/1.1 401 ") and b'"error"' in refused
    # an error found once the model has answered (no such output) is a 400 in the V2 format, and the
    # next pipelined request on the connection is still answered
    bad, good = _http_exchange(server, request(rows[0], outputs=[{"name": "nope"}]) + request(rows[1]), 2)
    assert bad.startswith(b"HTTP/1.1 400 ") and b"nope" in bad, bad
    assert np.isclose(prediction(good), expected[1, 0], rtol=1e-5)
    # a body larger than uvicorn's read buffer (64 KiB) is read to its end before it is decoded
    many = np.random.default_rng(6).normal(size=(400, 29))
    body = orjson.dumps({"inputs": [{"name": "dense_input", "shape": [400, 29], "datatype": "FP64",
                                     "data": many.tolist()}]})
    assert len(body) > 65536
    reply = httpx.post(f"{server.url}/v2/models/wire/infer", content=body, headers=server.headers, timeout=60)
    assert reply.status_code == 200, reply.text
    assert np.allclose(np.array(reply.json()["outputs"][0]["data"]), onnx_direct(ccfraud["path"], many).ravel(),
                       rtol=1e-5)
    # a client that leaves halfway through its body costs nothing and the route keeps serving
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request(rows[0])[:-20])
    (after,) = _http_exchange(server, request(rows[1]), 1)
    assert np.isclose(prediction(after), expected[1, 0], rtol=1e-5)
