"""Test support: a real `modelport serve` in a subprocess, and small real models built at run time."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ADMIN_TOKEN = "mp_test_admin_token_0123456789abcdef"

# The seed documents (Arazzo workflows) live in the steering repository's shared/ folder, beside a checkout, not in
# it: a fresh clone on its own has none. Tests that need them skip with that reason, unless MODELPORT_REQUIRE_SEEDS
# is set (.ci/run sets it, so CI never skips them silently).
SEEDS = Path(os.environ.get("MODELPORT_SEEDS") or Path(__file__).resolve().parent.parent.parent / "shared" / "seeds")


def seed_document(relative: str) -> Path:
    """The seed file at `relative` under SEEDS, or a pytest skip saying it is not beside this checkout."""
    import pytest

    path = SEEDS / relative
    if not path.is_file():
        if os.environ.get("MODELPORT_REQUIRE_SEEDS"):
            pytest.fail(f"seed document {path} is missing and MODELPORT_REQUIRE_SEEDS is set")
        pytest.skip(f"seed document {path} is not present (the seeds live in ../shared/seeds beside a checkout; "
                    "set MODELPORT_SEEDS to their folder)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_url() -> str | None:
    return os.environ.get("MODELPORT_TEST_DATABASE_URL") or None


class PostgresSchema:
    """A throw-away schema in the test database, so concurrent or repeated runs never see each other's rows."""

    def __init__(self, base_url: str) -> None:
        from sqlalchemy import create_engine, text

        self.name = f"mp_{uuid.uuid4().hex[:12]}"
        self._engine = create_engine(base_url)
        with self._engine.begin() as c:
            c.execute(text(f'CREATE SCHEMA "{self.name}"'))
        separator = "&" if "?" in base_url else "?"
        self.url = f"{base_url}{separator}options=-csearch_path%3D{self.name}"

    def drop(self) -> None:
        from sqlalchemy import text

        with self._engine.begin() as c:
            c.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
        self._engine.dispose()


class Server:
    """`modelport serve` on a free loopback port. `restart()` keeps the home folder and database."""

    def __init__(self, home: Path, *, database_url: str | None = None, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.database_url = database_url
        self.extra_env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ADMIN_TOKEN
        self.process: subprocess.Popen[str] | None = None
        self.log_path = home.parent / f"{home.name}-server.log"

    def start(self, timeout: float = 120.0) -> Server:
        env = {**os.environ, "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN, "MODELPORT_HOME": str(self.home),
               "MODELPORT_PORT": str(self.port), "MODELPORT_HOST": "127.0.0.1", **self.extra_env}
        env.pop("MODELPORT_DATABASE_URL", None)
        if self.database_url:
            env["MODELPORT_DATABASE_URL"] = self.database_url
        log = open(self.log_path, "a")
        self.process = subprocess.Popen([sys.executable, "-m", "modelport.cli", "serve"], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not answer /healthz within {timeout} s:\n{self.log()}")

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def restart(self) -> Server:
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def post(self, path: str, json: object = None, **kwargs: object) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return httpx.post(f"{self.url}{path}", json=json, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


# -- models built at run time --------------------------------------------------------------------------------------

def build_ccfraud_onnx(path: Path, features: int = 29, seed: int = 7) -> Path:
    """A dense layer with sigmoid, shaped like Wallaroo's ccfraud sample: input dense_input [N, 29] -> dense_1 [N, 1]."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(rng.normal(0, 0.3, (features, 1)).astype(np.float32), "W")
    bias = numpy_helper.from_array(np.array([-2.0], dtype=np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["dense_input", "W"], ["z"]), helper.make_node("Add", ["z", "B"], ["logit"]),
         helper.make_node("Sigmoid", ["logit"], ["dense_1"])],
        "ccfraud",
        [helper.make_tensor_value_info("dense_input", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("dense_1", TensorProto.FLOAT, ["N", 1])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def build_sklearn_classifier(path: Path) -> Path:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), path)
    return path


def build_xgboost_regressor(path: Path) -> Path:
    import numpy as np
    import xgboost

    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 3.0])
    booster = xgboost.train({"max_depth": 3, "nthread": 1}, xgboost.DMatrix(x, label=y), num_boost_round=10)
    booster.save_model(str(path))
    return path


# -- deployments -------------------------------------------------------------------------------------------------------

SEED_DENSE_INPUT = [
    1.0678324729, 0.2177810266, -1.7115145262, 0.682285721, 1.0138553067, -0.4335000013, 0.7395859437, -0.2882839595,
    -0.447262688, 0.5146124988, 0.3791316964, 0.5190619748, -0.4904593222, 1.1656456469, -0.9776307444, -0.6322198963,
    -0.6891477694, 0.1783317857, 0.1397992467, -0.3554220649, 0.4394217877, 1.4588397512, -0.3886829615, 0.4353492889,
    1.7420053483, -0.4434654615, -0.1515747891, -0.2668451725, -1.4549617756,
]


def upload_model(server: Server, workspace_id: int, name: str, path: Path, framework: str,
                 requirements: list[str] | None = None) -> dict:
    import json

    metadata = {"name": name, "visibility": "private", "workspace_id": workspace_id,
                "conversion": {"framework": framework, "python_version": "3.11", "requirements": requirements or []}}
    with open(path, "rb") as f:
        reply = httpx.post(f"{server.url}/v1/api/models/upload_and_convert", headers=server.headers, timeout=60,
                           files={"metadata": (None, json.dumps(metadata), "application/json"),
                                  "file": (path.name, f, "application/octet-stream")})
    assert reply.status_code == 200, reply.text
    return reply.json()["insert_models"]["returning"][0]["models"][0]


def create_pipeline(server: Server, workspace_id: int, name: str, steps: list[dict]) -> dict:
    definition = {"steps": [{"ModelInference": {"models": [
        {"name": m["model_id"], "version": m["model_version"], "sha": m["sha"]}]}} for m in steps]}
    reply = server.post("/v1/api/pipelines/create",
                        {"pipeline_id": name, "workspace_id": workspace_id, "definition": definition})
    assert reply.status_code == 200, reply.text
    return reply.json()


def deploy(server: Server, name: str, pipeline: dict, engine_config: dict | None = None) -> int:
    body = {"deploy_id": name, "pipeline_version_pk_id": pipeline["pipeline_variant_pk_id"],
            "pipeline_id": pipeline["pipeline_pk_id"]}
    if engine_config is not None:
        body["engine_config"] = engine_config
    reply = server.post("/v1/api/pipelines/deploy", body)
    assert reply.status_code == 200, reply.text
    return reply.json()["id"]


def wait_status(server: Server, deployment: str, wanted=("Running",), timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        reply = server.post("/v1/api/status/get_deployment", {"name": deployment})
        body = reply.json()
        if reply.status_code == 200 and body["status"] in wanted:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{deployment} did not reach {wanted}: {reply.status_code} {body}")
        time.sleep(0.05)


def infer_records(server: Server, deployment: str, pipeline: str, records: list[dict]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/api/pipelines/infer/{deployment}/{pipeline}", json=records, timeout=60,
                      headers={**server.headers, "Content-Type": "application/json; format=pandas-records"})
