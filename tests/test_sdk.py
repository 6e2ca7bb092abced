"""The Python SDK against a real server: typed objects back, typed exceptions on errors."""

from __future__ import annotations

import pytest

import modelport
from modelport.sdk.errors import AuthenticationError, ConflictError, InvalidRequestError, NotFoundError
from tests.support import Server, build_ccfraud_onnx, build_sklearn_classifier

pytestmark = pytest.mark.database


def test_sdk_workspace_models_pipelines_and_copy(server: Server, model_dir) -> None:
    client = modelport.Client(server.url, server.token)
    ws = client.create_workspace("sdk-space")
    client.set_workspace(ws)
    onnx_version = client.upload_model("sdk-ccfraud", build_ccfraud_onnx(model_dir / "sdk.onnx"), framework="onnx")
    sk_version = client.upload_model("sdk-iris", build_sklearn_classifier(model_dir / "sdk.joblib"),
                                     framework="sklearn", progress=True)
    assert isinstance(onnx_version, modelport.sdk.objects.ModelVersion)
    assert client.wait_for_model(onnx_version).status == "ready"
    assert client.wait_for_model(sk_version).status == "ready"
    assert [v.version for v in client.model_versions("sdk-ccfraud", onnx_version.model_id)] == [onnx_version.version]

    pipeline = client.build_pipeline("sdk-pipeline", [onnx_version])
    assert pipeline.latest.definition["steps"][0]["ModelInference"]["models"][0]["sha"] == onnx_version.sha
    again = client.build_pipeline("sdk-pipeline", [sk_version])
    assert again.id == pipeline.id and len(again.versions) == 2

    copy = client.copy_pipeline(again, "sdk-pipeline-copy")
    assert copy.id != again.id and copy.latest.definition == again.latest.definition
    assert {p.name for p in client.list_pipelines()} == {"sdk-pipeline", "sdk-pipeline-copy"}
    assert {w.name for w in client.list_workspaces()} >= {"sdk-space"}


def test_sdk_raises_typed_errors(server: Server) -> None:
    client = modelport.Client(server.url, server.token)
    client.set_workspace("sdk-errors")
    with pytest.raises(InvalidRequestError) as bad:
        client.build_pipeline("bad_name")
    assert bad.value.field == "pipeline_id"
    with pytest.raises(ConflictError):
        client.create_workspace("sdk-errors")
    with pytest.raises(NotFoundError):
        client.model_version(424242)
    with pytest.raises(AuthenticationError):
        modelport.Client(server.url, "mp_not_a_token").list_workspaces()
    token = client.create_token("temporary")
    # the token works; its user (created with it) is a member of no workspace yet, so it sees none
    assert token.secret and modelport.Client(server.url, token.secret).list_workspaces() == []
    client.revoke_token(token.id)
    with pytest.raises(AuthenticationError):
        modelport.Client(server.url, token.secret).list_workspaces()


def test_sdk_deploy_infer_logs_undeploy(server: Server, model_dir) -> None:
    import pandas as pd
    import pyarrow as pa

    from tests.support import SEED_DENSE_INPUT

    client = modelport.Client(server.url, server.token)
    client.set_workspace("sdk-serving")
    version = client.wait_for_model(client.upload_model("sdk-cc", build_ccfraud_onnx(model_dir / "sdk-cc.onnx")))
    pipeline = client.build_pipeline("sdk-cc-pipeline", [version])
    deployment = client.deploy(pipeline)
    assert client.status(deployment)["status"] == "Running"

    frame = client.infer(deployment, pd.DataFrame({"dense_input": [SEED_DENSE_INPUT, SEED_DENSE_INPUT]}))
    assert {"time", "in.dense_input", "out.dense_1"} <= set(frame.columns) and len(frame) == 2
    table = client.infer(deployment, pa.table({"dense_input": [SEED_DENSE_INPUT]}))
    assert table.column("out.dense_1").to_pylist()[0][0] == pytest.approx(frame["out.dense_1"][0][0], rel=1e-6)
    assert len(client.logs(pipeline)) == 2

    client.undeploy(deployment)
    with pytest.raises(NotFoundError):
        client.status(deployment)
    with pytest.raises(NotFoundError):
        client.infer(deployment, pd.DataFrame({"dense_input": [SEED_DENSE_INPUT]}))
