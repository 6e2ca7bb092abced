"""The SageMaker face with unmodified boto3 / botocore against a real server, models really served."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import boto3
import botocore.exceptions
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris

from tests.support import Server, seed_document, build_sklearn_classifier

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/modelport-test"
IMAGE = "683313688378.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sagemaker-artifacts")


@pytest.fixture(scope="module")
def s3() -> str:
    """An S3-compatible server on loopback (moto's), standing in for AWS S3 or MinIO."""
    from moto.server import ThreadedMotoServer

    from tests.support import free_port

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    moto.start()
    yield f"http://127.0.0.1:{port}"
    moto.stop()


@pytest.fixture(scope="module")
def server_env(artifacts: Path, s3: str) -> dict[str, str]:
    return {"MODELPORT_SAGEMAKER_FILE_ROOTS": json.dumps([str(artifacts)]), "MODELPORT_AWS_ACCOUNT_ID": "123456789012",
            "MODELPORT_S3_ENDPOINT_URL": s3, "AWS_ACCESS_KEY_ID": "s3-reader", "AWS_SECRET_ACCESS_KEY": "s3-secret",
            "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def keys(server: Server) -> tuple[str, str]:
    env = {**os.environ, "MODELPORT_HOME": str(server.home)}
    if server.database_url:
        env["MODELPORT_DATABASE_URL"] = server.database_url
    out = subprocess.run([sys.executable, "-m", "modelport.cli", "token", "create", "ci", "--aws"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return re.search(r"aws_access_key_id:\s+(\S+)", out).group(1), re.search(r"aws_secret_access_key:\s+(\S+)", out).group(1)


def clients(server: Server, keys: tuple[str, str], secret: str | None = None):
    options = {"endpoint_url": server.url, "region_name": REGION, "aws_access_key_id": keys[0],
               "aws_secret_access_key": secret or keys[1]}
    return boto3.client("sagemaker", **options), boto3.client("sagemaker-runtime", **options)


def model_tarball(folder: Path, name: str, model_path: Path, member: str = "model.joblib") -> str:
    archive = folder / f"{name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model_path, arcname=member)
    return f"file://{archive}"


def deploy(sm, name: str, url: str, variants: list[tuple[str, float]] | None = None) -> None:
    sm.create_model(ModelName=name, PrimaryContainer={"Image": IMAGE, "ModelDataUrl": url}, ExecutionRoleArn=ROLE)
    production = [{"VariantName": v, "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
                   "InitialVariantWeight": w} for v, w in (variants or [("AllTraffic", 1.0)])]
    sm.create_endpoint_config(EndpointConfigName=f"{name}-config", ProductionVariants=production)
    sm.create_endpoint(EndpointName=f"{name}-endpoint", EndpointConfigName=f"{name}-config")


def test_boto3_deploys_and_invokes_a_real_model(server: Server, keys, artifacts: Path) -> None:
    sm, runtime = clients(server, keys)
    model_path = build_sklearn_classifier(artifacts / "iris.joblib")
    deploy(sm, "iris", model_tarball(artifacts, "iris", model_path))
    assert sm.describe_endpoint(EndpointName="iris-endpoint")["EndpointStatus"] in ("Creating", "InService")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="iris-endpoint", WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    described = sm.describe_endpoint(EndpointName="iris-endpoint")
    assert described["EndpointArn"] == f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/iris-endpoint"
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 1

    x, _ = load_iris(return_X_y=True)
    rows = x[[0, 60, 120]]
    expected = joblib.load(model_path).predict(rows).tolist()
    csv = "\n".join(",".join(map(str, r)) for r in rows)
    reply = runtime.invoke_endpoint(EndpointName="iris-endpoint", ContentType="text/csv", Body=csv,
                                    CustomAttributes="trace=1")
    assert json.loads(reply["Body"].read()) == expected
    assert reply["InvokedProductionVariant"] == "AllTraffic" and reply["CustomAttributes"] == "trace=1"
    reply = runtime.invoke_endpoint(EndpointName="iris-endpoint", ContentType="application/json",
                                    Accept="text/csv", Body=json.dumps(rows.tolist()))
    assert reply["Body"].read().decode().split() == [str(v) for v in expected]

    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["iris"]
    assert sm.describe_model(ModelName="iris")["PrimaryContainer"]["Image"] == IMAGE
    assert sm.describe_endpoint_config(EndpointConfigName="iris-config")["ProductionVariants"][0]["VariantName"] == "AllTraffic"
    assert [e["EndpointName"] for e in sm.list_endpoints(StatusEquals="InService")["Endpoints"]] == ["iris-endpoint"]
    page = sm.list_endpoint_configs(MaxResults=1)
    assert len(page["EndpointConfigs"]) == 1


def test_model_data_from_an_s3_compatible_store(server: Server, keys, artifacts: Path, s3: str) -> None:
    bucket = boto3.client("s3", endpoint_url=s3, region_name="us-east-1", aws_access_key_id="s3-reader",
                          aws_secret_access_key="s3-secret")
    bucket.create_bucket(Bucket="models")
    model_path = build_sklearn_classifier(artifacts / "from-s3.joblib")
    tarball = model_tarball(artifacts, "from-s3", model_path)[len("file://"):]
    bucket.upload_file(tarball, "models", "iris/model.tar.gz")
    sm, runtime = clients(server, keys)
    deploy(sm, "from-s3", "s3://models/iris/model.tar.gz")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="from-s3-endpoint", WaiterConfig={"Delay": 1})
    body = np.load(io.BytesIO(runtime.invoke_endpoint(
        EndpointName="from-s3-endpoint", ContentType="application/json", Accept="application/x-npy",
        Body=json.dumps([5.1, 3.5, 1.4, 0.2]))["Body"].read()))
    assert body.tolist() == [0]
    deploy(sm, "missing-s3", "s3://models/nothing/here.tar.gz")
    with pytest.raises(botocore.exceptions.WaiterError):
        sm.get_waiter("endpoint_in_service").wait(EndpointName="missing-s3-endpoint", WaiterConfig={"Delay": 1})
    assert "could not fetch" in sm.describe_endpoint(EndpointName="missing-s3-endpoint")["FailureReason"]


def test_weights_split_traffic_and_target_variant_forces_one(server: Server, keys, artifacts: Path) -> None:
    sm, runtime = clients(server, keys)
    model_path = build_sklearn_classifier(artifacts / "ab.joblib")
    deploy(sm, "ab", model_tarball(artifacts, "ab", model_path), [("Blue", 3.0), ("Green", 1.0)])
    sm.get_waiter("endpoint_in_service").wait(EndpointName="ab-endpoint", WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    counts: Counter[str] = Counter()
    for _ in range(2000):
        counts[runtime.invoke_endpoint(EndpointName="ab-endpoint", ContentType="text/csv",
                                       Body="5.1,3.5,1.4,0.2")["InvokedProductionVariant"]] += 1
    assert abs(counts["Blue"] / 2000 - 0.75) <= 0.05, counts
    # as AWS shows an endpoint in service: the weights as given, the same number current and desired, and the
    # image each variant's model specifies
    variants = {v["VariantName"]: v for v in sm.describe_endpoint(EndpointName="ab-endpoint")["ProductionVariants"]}
    assert [(v["CurrentWeight"], v["DesiredWeight"]) for v in variants.values()] == [(3.0, 3.0), (1.0, 1.0)]
    assert all(v["DeployedImages"][0]["SpecifiedImage"] == IMAGE for v in variants.values())
    forced = runtime.invoke_endpoint(EndpointName="ab-endpoint", ContentType="text/csv", Body="5.1,3.5,1.4,0.2",
                                     TargetVariant="Green")
    assert forced["InvokedProductionVariant"] == "Green"


def test_a_broken_artifact_fails_and_delete_works(server: Server, keys, artifacts: Path) -> None:
    sm, _ = clients(server, keys)
    broken = artifacts / "broken.tar.gz"
    broken.write_bytes(b"this is not a tarball")
    deploy(sm, "broken", f"file://{broken}")
    with pytest.raises(botocore.exceptions.WaiterError):
        sm.get_waiter("endpoint_in_service").wait(EndpointName="broken-endpoint",
                                                  WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    described = sm.describe_endpoint(EndpointName="broken-endpoint")
    assert described["EndpointStatus"] == "Failed" and "corrupt" in described["FailureReason"], described
    _, runtime = clients(server, keys)
    assert code_of(lambda: runtime.invoke_endpoint(EndpointName="broken-endpoint", ContentType="text/csv", Body="1")) \
        == "ModelNotReadyException"
    outside = "file:///etc/hostname"
    sm.create_model(ModelName="outside", PrimaryContainer={"Image": IMAGE, "ModelDataUrl": outside})
    sm.create_endpoint_config(EndpointConfigName="outside-config", ProductionVariants=[
        {"VariantName": "v", "ModelName": "outside", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sm.create_endpoint(EndpointName="outside-endpoint", EndpointConfigName="outside-config")
    with pytest.raises(botocore.exceptions.WaiterError):
        sm.get_waiter("endpoint_in_service").wait(EndpointName="outside-endpoint", WaiterConfig={"Delay": 1})
    assert "outside the folders" in sm.describe_endpoint(EndpointName="outside-endpoint")["FailureReason"]
    sm.delete_endpoint(EndpointName="broken-endpoint")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="broken-endpoint", WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def code_of(call) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as error:
        call()
    return error.value.response["Error"]["Code"]


def test_validation_and_credentials_errors(server: Server, keys, artifacts: Path) -> None:
    sm, runtime = clients(server, keys)
    container = {"Image": IMAGE, "ModelDataUrl": "s3://bucket/model.tar.gz"}
    assert code_of(lambda: sm.create_model(ModelName="bad_name", PrimaryContainer=container)) == "ValidationException"
    assert code_of(lambda: sm.create_model(ModelName="x" * 64, PrimaryContainer=container)) == "ValidationException"
    assert code_of(lambda: sm.create_model(ModelName="ok", PrimaryContainer={**container, "ModelDataUrl": "ftp://x"})) \
        == "ValidationException"
    assert code_of(lambda: sm.create_model(ModelName="ok", PrimaryContainer=container, ExecutionRoleArn="not-a-role-arn-at-all-really")) \
        == "ValidationException"
    sm.create_model(ModelName="dup", PrimaryContainer=container)
    assert code_of(lambda: sm.create_model(ModelName="dup", PrimaryContainer=container)) == "ValidationException"
    assert code_of(lambda: sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "v", "ModelName": "missing", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])) \
        == "ValidationException"
    assert code_of(lambda: sm.create_endpoint(EndpointName="e", EndpointConfigName="missing")) == "ValidationException"
    assert code_of(lambda: sm.describe_endpoint(EndpointName="missing")) == "ValidationException"
    assert code_of(lambda: sm.list_endpoints(StatusEquals="Sleeping")) == "ValidationException"
    assert code_of(lambda: runtime.invoke_endpoint(EndpointName="missing", ContentType="text/csv", Body="1")) \
        == "ValidationError"
    bad_sm, _ = clients(server, keys, secret="wrong-secret")
    assert code_of(lambda: bad_sm.list_models()) == "InvalidSignatureException"
    unknown, _ = clients(server, ("AKMPUNKNOWN", "x"))
    assert code_of(lambda: unknown.list_models()) == "UnrecognizedClientException"
    assert [m["ModelName"] for m in sm.list_models(NameContains="dup")["Models"]] == ["dup"]


def test_the_seed_sagemaker_workflow_runs_verbatim(server: Server, keys, artifacts: Path) -> None:
    workflow = seed_document("arazzo/amazon-sagemaker-deploy-model-to-endpoint-workflow.yml")
    model_path = build_sklearn_classifier(artifacts / "arazzo.joblib")
    url = model_tarball(artifacts, "arazzo", model_path)
    inputs = {"modelName": "arazzo-model", "image": IMAGE, "modelDataUrl": url, "executionRoleArn": ROLE,
              "endpointConfigName": "arazzo-config", "variantName": "AllTraffic", "initialInstanceCount": "1",
              "instanceType": "ml.m5.large", "endpointName": "arazzo-endpoint"}
    args = [sys.executable, "-m", "modelport.cli", "workflow", "run",
            str(workflow),
            "--server", f"sagemakerApi={server.url}", "--server-variable", f"region={REGION}",
            "--poll-interval", "0.5", "--json"]
    for key, value in inputs.items():
        args += ["--input", f"{key}={value}"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": keys[0], "AWS_SECRET_ACCESS_KEY": keys[1]}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    outputs = json.loads(result.stdout)["outputs"]
    assert outputs["endpointStatus"] == "InService"
    assert outputs["modelArn"].endswith(":model/arazzo-model") and outputs["endpointArn"].endswith(":endpoint/arazzo-endpoint")


def test_update_endpoint_under_load_switches_without_errors(server: Server, keys, artifacts: Path) -> None:
    import threading

    from sklearn.dummy import DummyClassifier

    sm, runtime = clients(server, keys)
    first = build_sklearn_classifier(artifacts / "rolling-a.joblib")
    x, y = load_iris(return_X_y=True)
    second = artifacts / "rolling-b.joblib"
    joblib.dump(DummyClassifier(strategy="constant", constant=2).fit(x, y), second)
    deploy(sm, "rolling", model_tarball(artifacts, "rolling-a", first))
    sm.get_waiter("endpoint_in_service").wait(EndpointName="rolling-endpoint", WaiterConfig={"Delay": 1})
    sm.create_model(ModelName="rolling-b", PrimaryContainer={"Image": IMAGE,
                                                             "ModelDataUrl": model_tarball(artifacts, "rolling-b", second)})
    sm.create_endpoint_config(EndpointConfigName="rolling-b-config", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "rolling-b", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    stop = threading.Event()
    answers: list[int] = []
    errors: list[Exception] = []

    def invoke() -> None:
        _, client = clients(server, keys)
        while not stop.is_set():
            try:
                reply = client.invoke_endpoint(EndpointName="rolling-endpoint", ContentType="text/csv",
                                               Body="5.1,3.5,1.4,0.2")
                answers.append(json.loads(reply["Body"].read())[0])
            except Exception as exc:  # noqa: BLE001 - every error counts
                errors.append(exc)

    threads = [threading.Thread(target=invoke) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        sm.update_endpoint(EndpointName="rolling-endpoint", EndpointConfigName="rolling-b-config")
        assert sm.describe_endpoint(EndpointName="rolling-endpoint")["EndpointStatus"] in ("Updating", "InService")
        sm.get_waiter("endpoint_in_service").wait(EndpointName="rolling-endpoint", WaiterConfig={"Delay": 1})
        import time

        deadline = time.monotonic() + 30
        while (not answers or answers[-1] != 2) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert answers[0] == 0 and answers[-1] == 2
    sm.update_endpoint_weights_and_capacities(EndpointName="rolling-endpoint", DesiredWeightsAndCapacities=[
        {"VariantName": "AllTraffic", "DesiredInstanceCount": 2}])
    sm.get_waiter("endpoint_in_service").wait(EndpointName="rolling-endpoint", WaiterConfig={"Delay": 1})
    summary = sm.describe_endpoint(EndpointName="rolling-endpoint")["ProductionVariants"][0]
    assert summary["DesiredInstanceCount"] == 2 and summary["CurrentInstanceCount"] == 2


INFERENCE_PY = b'''
import json
import os

import humanize
import joblib


def model_fn(model_dir, context=None):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(body, content_type):
    if content_type != "application/json":
        raise ValueError("only JSON here")
    rows = json.loads(body)["rows"]
    if rows == "boom":
        raise RuntimeError("the handler blew up")
    return rows


def predict_fn(data, model, context=None):
    return model.predict(data)


def output_fn(prediction, accept):
    return json.dumps({"labels": [int(p) for p in prediction],
                       "count": humanize.intcomma(1000 * len(prediction))}), "application/json"
'''


def test_inference_toolkit_handlers_and_their_requirements(server: Server, keys, artifacts: Path) -> None:
    sm, runtime = clients(server, keys)
    model_path = build_sklearn_classifier(artifacts / "handler.joblib")
    archive = artifacts / "handler.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model_path, arcname="model.joblib")
        for name, data in (("code/inference.py", INFERENCE_PY), ("code/requirements.txt", b"humanize>=4\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    sm.create_model(ModelName="handler", PrimaryContainer={
        "Image": "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.1-cpu-py310",
        "ModelDataUrl": f"file://{archive}", "Environment": {"SAGEMAKER_PROGRAM": "inference.py"}})
    sm.create_endpoint_config(EndpointConfigName="handler-config", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "handler", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sm.create_endpoint(EndpointName="handler-endpoint", EndpointConfigName="handler-config")
    sm.get_waiter("endpoint_in_service").wait(EndpointName="handler-endpoint",
                                              WaiterConfig={"Delay": 1, "MaxAttempts": 180})
    x, _ = load_iris(return_X_y=True)
    rows = x[[0, 60, 120]].tolist()
    reply = runtime.invoke_endpoint(EndpointName="handler-endpoint", ContentType="application/json",
                                    Body=json.dumps({"rows": rows}))
    assert json.loads(reply["Body"].read()) == {"labels": joblib.load(model_path).predict(rows).tolist(),
                                                 "count": "3,000"}
    assert reply["ContentType"] == "application/json"
    with pytest.raises(botocore.exceptions.ClientError) as error:
        runtime.invoke_endpoint(EndpointName="handler-endpoint", ContentType="application/json",
                                Body=json.dumps({"rows": "boom"}))
    assert error.value.response["Error"]["Code"] == "ModelError"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert "blew up" in error.value.response["OriginalMessage"]


def test_endpoints_come_back_after_a_restart(server: Server, keys) -> None:
    server.restart()
    sm, runtime = clients(server, keys)
    sm.get_waiter("endpoint_in_service").wait(EndpointName="iris-endpoint", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    reply = runtime.invoke_endpoint(EndpointName="iris-endpoint", ContentType="text/csv", Body="5.1,3.5,1.4,0.2")
    assert json.loads(reply["Body"].read()) == [0]


def test_zero_rows_and_hostile_bodies_through_invoke_endpoint(server: Server, keys, artifacts: Path) -> None:
    """Zero rows in, zero rows out in every content type; hostile bodies (deep nesting, huge integers, garbage)
    are a 400 ValidationError, never a 500 (before: RecursionError and OverflowError answered 500)."""
    from botocore.config import Config
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    sm, _ = clients(server, keys)
    runtime = boto3.client("sagemaker-runtime", endpoint_url=server.url, region_name=REGION,
                           aws_access_key_id=keys[0], aws_secret_access_key=keys[1],
                           config=Config(retries={"total_max_attempts": 1}))  # a 5xx must show, not be retried
    deploy(sm, "edge", model_tarball(artifacts, "edge", build_sklearn_classifier(artifacts / "edge.joblib")))
    sm.get_waiter("endpoint_in_service").wait(EndpointName="edge-endpoint", WaiterConfig={"Delay": 1, "MaxAttempts": 120})

    def invoke(body: bytes, content_type: str, accept: str = "application/json") -> bytes:
        return runtime.invoke_endpoint(EndpointName="edge-endpoint", ContentType=content_type, Accept=accept,
                                       Body=body)["Body"].read()

    assert json.loads(invoke(b"[]", "application/json")) == []
    assert invoke(b"", "text/csv", "text/csv") == b""
    empty = io.BytesIO()
    np.save(empty, np.zeros((0, 4)))
    assert np.load(io.BytesIO(invoke(empty.getvalue(), "application/x-npy", "application/x-npy"))).shape[0] == 0
    assert len(json.loads(invoke(b"5.1,3.5,1.4,0.2", "text/csv"))) == 1  # and it serves on

    def status_of(body: bytes, content_type: str) -> int:
        try:
            invoke(body, content_type)
        except botocore.exceptions.ClientError as error:
            assert error.response["Error"]["Code"] == "ValidationError", error.response
            return error.response["ResponseMetadata"]["HTTPStatusCode"]
        return 200

    assert status_of(b"[" * 100_000 + b"]" * 100_000, "application/json") == 400
    assert status_of(b"[[" + b"9" * 400 + b", 1, 2, 3]]", "application/json") == 400
    assert status_of(json.dumps([[10**30, 1, 2, 3]]).encode(), "application/json") in (200, 400)
    assert status_of(b"1e999,1,2,3", "text/csv") in (200, 400)

    values = st.recursive(st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats() | st.text(max_size=5),
                          lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                          max_leaves=16)
    bodies = (values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=64)
              | st.lists(st.lists(st.text(max_size=6), max_size=5), max_size=4).map(
                  lambda rows: "\n".join(",".join(r) for r in rows).encode()))

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(bodies, st.sampled_from(["application/json", "text/csv", "application/x-npy", "image/png"]))
    def hostile(body: bytes, content_type: str) -> None:
        assert status_of(body, content_type) in (200, 400), (content_type, body[:100])

    hostile()
