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

    def start(self, timeout: float = 60.0) -> Server:
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
