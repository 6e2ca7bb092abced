"""The SageMaker inference-toolkit contract, run inside a replica: code/inference.py with model_fn, input_fn,
predict_fn, output_fn (or one transform_fn), each optionally taking a trailing `context`; defaults where absent."""

from __future__ import annotations

import importlib.util
import inspect
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


class HandlerError(Exception):
    """The request cannot be handled as sent (unsupported content type, unreadable body): the caller's fault."""


def _default_input(body: bytes, content_type: str) -> Any:
    kind = (content_type or "application/json").split(";", 1)[0].strip().lower()
    if kind == "application/json":
        return np.asarray(json.loads(body))
    if kind == "text/csv":
        return np.array([line.split(",") for line in body.decode().splitlines() if line.strip()], dtype=np.float64)
    if kind == "application/x-npy":
        return np.load(io.BytesIO(body), allow_pickle=False)
    raise HandlerError(f"content type {kind!r} is not supported by the default input_fn")


def _default_output(prediction: Any, accept: str) -> tuple[bytes, str]:
    kind = (accept or "application/json").split(",", 1)[0].split(";", 1)[0].strip().lower()
    if kind in ("application/json", "*/*", ""):
        value = prediction.tolist() if isinstance(prediction, np.ndarray) else prediction
        return json.dumps(value).encode(), "application/json"
    array = np.asarray(prediction)
    if kind == "text/csv":
        rows = array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)
        return ("\n".join(",".join(map(str, r)) for r in rows.tolist()) + "\n").encode(), "text/csv"
    if kind == "application/x-npy":
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue(), "application/x-npy"
    raise HandlerError(f"accept type {kind!r} is not supported by the default output_fn")


class HandlerRuntime:
    def __init__(self, model_dir: Path, program: str = "inference.py") -> None:
        code = model_dir / "code"
        path = code / program
        if not path.is_file():
            raise FileNotFoundError(f"code/{program} is missing from the model")
        sys.path.insert(0, str(code))
        spec = importlib.util.spec_from_file_location("inference", path)
        assert spec and spec.loader
        self.module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)
        self.context = None
        model_fn = getattr(self.module, "model_fn", None)
        if model_fn is None:
            raise AttributeError("code/inference.py defines no model_fn")
        self.model = self._call(model_fn, str(model_dir))

    def _call(self, fn: Any, *args: Any) -> Any:
        """Handlers may take a trailing `context` argument; pass it when they do."""
        parameters = inspect.signature(fn).parameters
        if len(parameters) > len(args):
            return fn(*args, self.context)
        return fn(*args)

    def signature(self) -> dict[str, Any]:
        return {"inputs": [], "outputs": []}

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        m = self.module
        if hasattr(m, "transform_fn"):
            result = self._call(m.transform_fn, self.model, body, content_type, accept)
        else:
            data = (self._call(m.input_fn, body, content_type) if hasattr(m, "input_fn")
                    else _default_input(body, content_type))
            prediction = (self._call(m.predict_fn, data, self.model) if hasattr(m, "predict_fn")
                          else self.model.predict(data.reshape(1, -1) if getattr(data, "ndim", 2) == 1 else data))
            result = (self._call(m.output_fn, prediction, accept) if hasattr(m, "output_fn")
                      else _default_output(prediction, accept))
        if isinstance(result, tuple):
            payload, kind = result[0], result[1]
        else:
            payload, kind = result, accept if accept and accept != "*/*" else "application/json"
        if isinstance(payload, str):
            payload = payload.encode()
        return bytes(payload), kind
