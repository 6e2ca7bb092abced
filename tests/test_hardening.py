"""The data plane under unlucky and hostile use, over HTTP against a real server: empty inputs, hostile bodies,
slow models and slow clients (deadlines), and bodies that must not be read before their sender is authenticated."""

from __future__ import annotations

import io
import json
import socket
import time

import httpx
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import (
    SEED_DENSE_INPUT, Server, build_ccfraud_onnx, create_pipeline, deploy, infer_records, upload_model, wait_status,
)

TIMEOUT_S = 3


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"MODELPORT_REQUEST_TIMEOUT_S": str(TIMEOUT_S), "MODELPORT_MAX_UPLOAD_BYTES": str(64 * 1024**2)}


@pytest.fixture(scope="module")
def workspace(server: Server) -> int:
    return server.post("/v1/api/workspaces/create", {"workspace_name": "hardening"}).json()["workspace_id"]


@pytest.fixture(scope="module")
def ccfraud(server: Server, workspace: int, model_dir) -> str:
    """A deployed onnx model (dense_input [N, 29] -> dense_1 [N, 1]); its deployment name."""
    model = upload_model(server, workspace, "hard-ccfraud", build_ccfraud_onnx(model_dir / "hard.onnx"), "onnx")
    pipeline = create_pipeline(server, workspace, "hard", [model])
    name = f"hard-{deploy(server, 'hard', pipeline)}"
    wait_status(server, name)
    return name


SLEEPY_MODEL = b'''
import time
import pandas as pd

class Sleepy:
    """Doubles x; a row with x == 99 takes a minute."""

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        if (frame["x"] == 99).any():
            time.sleep(60)
        return pd.DataFrame({"y": frame["x"] * 2})
'''


@pytest.fixture(scope="module")
def sleepy(server: Server, workspace: int, model_dir) -> str:
    path = model_dir / "sleepy.py"
    path.write_bytes(SLEEPY_MODEL)
    model = upload_model(server, workspace, "sleepy", path, "python")
    deadline = time.monotonic() + 120
    while server.post("/v1/api/models/get_version_by_id", {"model_version_id": model["id"]}).json()[
            "model_version"]["model_version"]["status"] not in ("ready", "error") and time.monotonic() < deadline:
        time.sleep(0.1)
    pipeline = create_pipeline(server, workspace, "sleepy", [model])
    name = f"sleepy-{deploy(server, 'sleepy', pipeline)}"
    wait_status(server, name)
    return name


def v2(server: Server, model: str, body: object, **kwargs: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else _dumps(body)
    return httpx.post(f"{server.url}/v2/models/{model}/infer", content=content, timeout=30,
                      headers={**server.headers, **kwargs.pop("headers", {})}, **kwargs)  # type: ignore[arg-type]


def _dumps(value: object) -> bytes:
    """JSON as a hostile client writes it: integers of any size, NaN and Infinity included (orjson refuses both)."""
    return json.dumps(value).encode()


def arrow_file(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


# -- item 1: zero rows in, zero rows out ------------------------------------------------------------------------------

def test_zero_rows_in_zero_rows_out_in_every_codec(server: Server, ccfraud: str) -> None:
    """Before: a V2 request with shape [0, 29] never got an answer (the batch task died on a TypeError)."""
    url = f"{server.url}/v1/api/pipelines/infer/{ccfraud}/hard"
    empty = {"name": "dense_input", "shape": [0, 29], "datatype": "FP32", "data": []}
    reply = v2(server, "hard", {"inputs": [empty]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"] == [{"name": "dense_1", "datatype": "FP32", "shape": [0, 1], "data": []}]

    import tritonclient.http as triton  # V2 binary tensors both ways

    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    tensor = triton.InferInput("dense_input", [0, 29], "FP32")
    tensor.set_data_from_numpy(np.zeros((0, 29), dtype=np.float32), binary_data=True)
    result = client.infer("hard", [tensor], outputs=[triton.InferRequestedOutput("dense_1", binary_data=True)],
                          headers=server.headers)
    assert result.as_numpy("dense_1").shape == (0, 1)

    records = {**server.headers, "Content-Type": "application/json; format=pandas-records"}
    assert httpx.post(url, content=b"[]", headers=records).json() == []
    wallaroo = {**server.headers, "Content-Type": "application/json; format=wallaroo"}
    reply = httpx.post(url, content=b'{"dense_input": []}', headers=wallaroo)
    assert reply.status_code == 200 and reply.json() == [], reply.text
    table = pa.table({"dense_input": pa.array([], type=pa.list_(pa.float32(), 29))})
    reply = httpx.post(url, content=arrow_file(table), headers={
        **server.headers, "Content-Type": "application/vnd.apache.arrow.file"})
    assert reply.status_code == 200, reply.text
    answer = pa.ipc.open_file(pa.BufferReader(reply.content)).read_all()
    assert answer.num_rows == 0 and "out.dense_1" in answer.column_names
    # zero rows are still checked for what can be checked: the names
    wrong = {"inputs": [{"name": "nope", "shape": [0, 29], "datatype": "FP32", "data": []}]}
    assert v2(server, "hard", wrong).status_code == 400
    # and the deployment serves on
    assert infer_records(server, ccfraud, "hard", [{"dense_input": SEED_DENSE_INPUT}]).status_code == 200


# -- item 1: deadlines ------------------------------------------------------------------------------------------------

def test_a_slow_model_gets_a_504_in_each_face_format_and_the_deployment_recovers(server: Server,
                                                                                 sleepy: str) -> None:
    started = time.monotonic()
    reply = v2(server, "sleepy", {"inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [99]}]})
    assert reply.status_code == 504 and "error" in reply.json(), reply.text
    assert time.monotonic() - started < TIMEOUT_S + 2
    url = f"{server.url}/v1/api/pipelines/infer/{sleepy}/sleepy"
    reply = httpx.post(url, json=[{"x": 99}], timeout=30, headers=server.headers)
    assert reply.status_code == 504 and {"msg", "code"} <= set(reply.json()), reply.text
    # the replica stuck on the slow batch is replaced; requests after it are answered
    deadline = time.monotonic() + 60
    while True:
        reply = httpx.post(url, json=[{"x": 2}], timeout=30, headers=server.headers)
        if reply.status_code == 200 or time.monotonic() > deadline:
            break
    assert reply.status_code == 200 and reply.json()[0]["out"]["y"] == 4, reply.text


def test_a_client_that_never_sends_its_body_gets_a_504(server: Server, ccfraud: str) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S + 5) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v2/models/hard/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + server.token.encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\"")
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 504"), head
    assert time.monotonic() - started < TIMEOUT_S + 2


# -- item 2: hostile bodies get 4xx, never 500 ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20)
V2_TYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64",
            "BYTES", "FP8", 3, None]


numbers = st.integers(min_value=-(2**66), max_value=2**66) | st.floats() | st.booleans()


@st.composite
def v2_bodies(draw: st.DrawFn) -> bytes:
    """Well-formed V2 requests (numbers of any size and type in every datatype) with one part made hostile: the
    name, shape, datatype, data, parameters, outputs, id, or the whole body."""
    data = draw(st.lists(numbers, min_size=1, max_size=6))
    tensor = {"name": "dense_input", "shape": draw(st.sampled_from([[len(data)], [1, len(data)]])),
              "datatype": draw(st.sampled_from(V2_TYPES[:13])), "data": data}
    body: dict = {"inputs": [tensor]}
    corrupt = draw(st.sampled_from(["none", "name", "shape", "datatype", "data", "parameters", "outputs", "id",
                                    "inputs", "nested", "bytes"]))
    if corrupt in ("name", "datatype", "data", "parameters"):
        tensor[corrupt] = draw(json_values | st.sampled_from(V2_TYPES))
    elif corrupt == "shape":
        tensor["shape"] = draw(st.lists(st.integers(min_value=-2, max_value=2**64) | json_values, max_size=4))
    elif corrupt in ("outputs", "id"):
        body[corrupt] = draw(json_values)
    elif corrupt == "inputs":
        body["inputs"] = draw(st.sampled_from([[tensor, tensor], tensor, [], [None]]))
    elif corrupt in ("nested", "bytes"):
        return _nested(draw)
    return _dumps(body)


def _nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=1, max_value=5000))
    return draw(st.sampled_from([b"[" * depth + b"]" * depth, b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}",
                                 b"1" * depth, draw(st.binary(max_size=64)), b'{"inputs": [{"name": "x", "shape": [1],'
                                 b' "datatype": "FP64", "data": ' + b"[" * depth + b"1" + b"]" * depth + b"}]}"]))


HOSTILE = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def test_v2_out_of_range_integers_are_a_400(server: Server, ccfraud: str) -> None:
    """Before: INT8 holding 300 or INT64 beyond 2^63 answered 500 (OverflowError)."""
    for datatype, value in (("INT8", 300), ("INT64", 2**63), ("UINT8", -1), ("INT64", 2**64 + 1), ("INT32", 1e300)):
        reply = v2(server, "hard", {"inputs": [{"name": "dense_input", "shape": [1], "datatype": datatype,
                                                "data": [value]}]})
        assert reply.status_code == 400 and "error" in reply.json(), (datatype, value, reply.text)


def test_hostile_v2_bodies_get_a_4xx(server: Server, ccfraud: str) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as client:
        @HOSTILE
        @given(v2_bodies())
        def check(body: bytes) -> None:
            reply = client.post("/v2/models/hard/infer", content=body)
            assert reply.status_code < 500, (body[:200], reply.text)
            if reply.status_code >= 400:
                assert "error" in reply.json()

        check()


def test_hostile_wallaroo_bodies_get_a_4xx(server: Server, ccfraud: str) -> None:
    formats = ["application/json; format=pandas-records", "application/json; format=wallaroo",
               "application/vnd.apache.arrow.file", "application/vnd.apache.arrow.stream", "application/json"]
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as client:
        @HOSTILE
        @given(st.sampled_from(formats),
               json_values.map(_dumps) | st.builds(_nested_body, st.integers(1, 5000)) | st.binary(max_size=80)
               | st.builds(_records, json_values) | st.builds(_arrow, st.integers(0, 3), st.sampled_from(
                   [pa.float32(), pa.int8(), pa.string(), pa.list_(pa.float64()), pa.bool_()])))
        def check(content_type: str, body: bytes) -> None:
            reply = client.post(f"/v1/api/pipelines/infer/{ccfraud}/hard", content=body,
                                headers={"Content-Type": content_type})
            assert reply.status_code < 500, (content_type, body[:200], reply.text)
            if reply.status_code >= 400:
                assert {"msg", "code"} <= set(reply.json())

        check()


def _nested_body(depth: int) -> bytes:
    return b'[{"dense_input": ' + b"[" * depth + b"]" * depth + b"}]"


def _records(value: object) -> bytes:
    return _dumps([{"dense_input": value}, {"dense_input": SEED_DENSE_INPUT}])


def _arrow(rows: int, kind: pa.DataType) -> bytes:
    values = {pa.float32(): [1.5], pa.int8(): [1], pa.string(): ["a"], pa.list_(pa.float64()): [[1.0] * rows],
              pa.bool_(): [True]}[kind] * rows
    return arrow_file(pa.table({"dense_input": pa.array(values, type=kind)}))


# -- item 3: no body is read before its sender is authenticated, nor past its route's limit ---------------------------

BIG = 60 * 1024**2  # under the upload limit (64 MiB here): an unauthenticated body must not be read even so


def _rss_peak_reset(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (peak resident set) to the current RSS


def _proc_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


def _flood(port: int, path: str, headers: dict[str, str], *, size: int = BIG, chunked: bool = False
           ) -> tuple[int, int]:
    """POST up to `size` bytes of body, reading the answer as soon as the server gives one; (status, bytes sent)."""
    import select

    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\n{framing}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    chunk = b"7" * (1024 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head.encode() + b"\r\n")
        while sent < size:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 "), (path, answer[:200])
    return int(answer.split()[1]), sent


def _aws_key(server: Server) -> tuple[str, str]:
    import os
    import re
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "modelport.cli", "token", "create", "flood", "--aws"], check=True,
                         env={**os.environ, "MODELPORT_HOME": str(server.home)}, capture_output=True, text=True).stdout
    return (re.search(r"aws_access_key_id:\s+(\S+)", out).group(1),
            re.search(r"aws_secret_access_key:\s+(\S+)", out).group(1))


def test_bodies_are_not_read_before_authentication_nor_past_their_limit(server: Server) -> None:
    """Before: an unauthenticated POST without Content-Type was read up to 2 GiB before the token was checked
    (RSS 178 -> 738 MB), and the SageMaker face read a whole unsigned body before checking its signature."""
    from datetime import datetime, timezone

    pid = server.process.pid
    access_key, _ = _aws_key(server)
    now = datetime.now(timezone.utc)
    forged = {"Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{now:%Y%m%d}/eu-west-1/sagemaker/"
                               "aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" + "0" * 64,
              "X-Amz-Date": f"{now:%Y%m%dT%H%M%SZ}", "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    unauthenticated = [
        ("/", {}), ("/sagemaker", {"Content-Type": "application/x-amz-json-1.1"}), ("/", forged),
        ("/endpoints/x/invocations", {}), ("/endpoints/x/invocations", forged),
        ("/v1/api/models/upload", {}), ("/v1/api/workspaces/create", {"Content-Type": "application/json"}),
        ("/v2/models/hard/infer", {"Authorization": "Bearer wrong"}),
        ("/admin/api/services/x/generations", {}), ("/public/api/v1/s/e/predict", {}),
        ("/api/v1/pipelines", {}), ("/endpoints/some-endpoint", {}), ("/ui/deployments/x/undeploy", {}),
        ("/no/such/route", {}), ("/modelport/v1/tokens", {"Authorization": "Bearer wrong"}),
    ]
    _rss_peak_reset(pid)
    before = _proc_kib(pid, "VmRSS")
    for path, headers in unauthenticated:
        for chunked in (False, True):
            started = time.monotonic()
            status, sent = _flood(server.port, path, headers, chunked=chunked)
            assert status in (401, 403), (path, chunked, status)
            assert sent < 32 * 1024**2 and time.monotonic() - started < 5, (path, chunked, sent)
    auth = {"Authorization": f"Bearer {server.token}"}
    # over the route's limit by Content-Length: refused at once (JSON routes 16 MiB, uploads 64 MiB here)
    for path, size in (("/v1/api/workspaces/create", 17 * 1024**2), ("/v1/api/models/upload", 65 * 1024**2),
                       ("/v2/models/hard/infer", 65 * 1024**2), ("/", 17 * 1024**2)):
        status, sent = _flood(server.port, path, auth if path != "/" else forged, size=size)
        assert status in (413, 403) and sent < 48 * 1024**2, (path, status, sent)
        if path != "/":
            assert status == 413
    # chunked past the limit: counted while it streams
    status, _ = _flood(server.port, "/v1/api/workspaces/create", {**auth, "Content-Type": "application/json"},
                       size=64 * 1024**2, chunked=True)
    assert status == 413
    grown_mib = (_proc_kib(pid, "VmHWM") - before) / 1024
    assert grown_mib < 48, f"the server's peak RSS grew by {grown_mib:.0f} MiB"
    assert httpx.get(f"{server.url}/healthz").status_code == 200
