"""Runtimes load one model version and run it on a columnar batch: a dict of column name -> numpy array.

They are imported only inside replica and check processes, never by the API process.
"""

from __future__ import annotations

import importlib.util
import inspect
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

Columns = dict[str, np.ndarray]

_ONNX_TYPES = {
    "tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
    "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32", "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16", "tensor(uint32)": "UINT32", "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL", "tensor(string)": "BYTES",
}


class Runtime(Protocol):
    def signature(self) -> dict[str, Any]:
        """{"inputs": [{"name", "datatype", "shape"}], "outputs": [...]}; -1 marks a variable dimension."""

    def predict(self, columns: Columns, outputs: frozenset[str] | None = None) -> Columns:
        """`outputs` names what the caller wants (None: everything); a runtime may skip work for the rest."""


class OnnxRuntime:
    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = self.session.get_inputs()
        self.outputs = self.session.get_outputs()

    def signature(self) -> dict[str, Any]:
        def describe(arg: Any) -> dict[str, Any]:
            shape = [d if isinstance(d, int) else -1 for d in (arg.shape or [])]
            return {"name": arg.name, "datatype": _ONNX_TYPES.get(arg.type, arg.type), "shape": shape}

        return {"inputs": [describe(i) for i in self.inputs], "outputs": [describe(o) for o in self.outputs]}

    def predict(self, columns: Columns, outputs: frozenset[str] | None = None) -> Columns:
        feed = {}
        for arg in self.inputs:
            if arg.name not in columns:
                raise KeyError(arg.name)
            feed[arg.name] = columns[arg.name].astype(_numpy_dtype(arg.type), copy=False)
        results = self.session.run(None, feed)
        return {o.name: r for o, r in zip(self.outputs, results)}


def _numpy_dtype(onnx_type: str) -> Any:
    return {
        "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
        "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_, "tensor(string)": np.object_,
    }.get(onnx_type, np.float32)


def _feature_matrix(columns: Columns, feature_names: list[str] | None) -> np.ndarray:
    """Named feature columns when the model knows its feature names, else one column holding whole rows."""
    if feature_names and all(name in columns for name in feature_names):
        return np.column_stack([columns[name] for name in feature_names])
    if len(columns) == 1:
        (only,) = columns.values()
        return only.reshape(len(only), -1) if only.ndim != 2 else only
    return np.column_stack(list(columns.values()))


class SklearnRuntime:
    """predict, and predict_proba when the model has it. Callers that name their outputs (the Open Inference
    Protocol does) get only those computed: scikit-learn's per-call validation costs more than a small model."""

    def __init__(self, path: Path) -> None:
        import joblib
        import sklearn

        # We check inputs ourselves (shape, finiteness) before calling the model, so scikit-learn need not.
        sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
        self.model = joblib.load(path)
        if not callable(getattr(self.model, "predict", None)):
            raise TypeError(f"the loaded object ({type(self.model).__name__}) has no predict method")
        names = getattr(self.model, "feature_names_in_", None)
        self.feature_names = [str(n) for n in names] if names is not None else None
        self.n_features = getattr(self.model, "n_features_in_", None)
        self.has_proba = callable(getattr(self.model, "predict_proba", None))
        from modelport.serving.linear import shortcuts

        self._predict, self._proba = shortcuts(self.model)

    def signature(self) -> dict[str, Any]:
        width = int(self.n_features) if self.n_features is not None else -1
        if self.feature_names:
            inputs = [{"name": n, "datatype": "FP64", "shape": [-1]} for n in self.feature_names]
        else:
            inputs = [{"name": "inputs", "datatype": "FP64", "shape": [-1, width]}]
        outputs = [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]
        if self.has_proba:
            classes = getattr(self.model, "classes_", [])
            outputs.append({"name": "probabilities", "datatype": "FP64", "shape": [-1, len(classes)], "optional": True})
        return {"inputs": inputs, "outputs": outputs, "classes": [_plain(c) for c in getattr(self.model, "classes_", [])]}

    def predict(self, columns: Columns, outputs: frozenset[str] | None = None) -> Columns:
        matrix = _checked(_feature_matrix(columns, self.feature_names))
        # numpy widens float32 and integer rows to the float64 coefficients exactly as scikit-learn does
        direct = matrix.dtype.kind in "fiu" and matrix.ndim == 2 and matrix.shape[1] == self.n_features
        out: Columns = {}
        if outputs is None or "predictions" in outputs:
            predict = self._predict if direct and self._predict is not None else self.model.predict
            out["predictions"] = np.asarray(predict(matrix))
        if self.has_proba and (outputs is None or "probabilities" in outputs):
            proba = self._proba if direct and self._proba is not None else self.model.predict_proba
            out["probabilities"] = np.asarray(proba(matrix))
        return out


class XGBoostRuntime:
    def __init__(self, path: Path) -> None:
        import xgboost

        self.booster = xgboost.Booster()
        self.booster.load_model(bytearray(path.read_bytes()))  # JSON or UBJSON, detected from the content
        self.feature_names = self.booster.feature_names
        self.n_features = self.booster.num_features()

    def signature(self) -> dict[str, Any]:
        if self.feature_names:
            inputs = [{"name": n, "datatype": "FP32", "shape": [-1]} for n in self.feature_names]
        else:
            inputs = [{"name": "inputs", "datatype": "FP32", "shape": [-1, self.n_features]}]
        return {"inputs": inputs, "outputs": [{"name": "predictions", "datatype": "FP32", "shape": [-1]}]}

    def predict(self, columns: Columns, outputs: frozenset[str] | None = None) -> Columns:
        import xgboost

        matrix = _feature_matrix(columns, self.feature_names)
        dmatrix = xgboost.DMatrix(matrix.astype(np.float32, copy=False), feature_names=self.feature_names)
        return {"predictions": np.asarray(self.booster.predict(dmatrix))}


_PYTHON_ENTRY_MODULES = ("main.py", "model.py", "predict.py")


class PythonRuntime:
    """A user class with `predict(DataFrame) -> DataFrame`, from a single module or a ZIP of modules."""

    def __init__(self, path: Path, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        if zipfile.is_zipfile(path):
            from modelport.jobs.packages import extract_zip

            extract_zip(path, workdir)
        else:
            shutil.copyfile(path, workdir / "model.py")
        module_path = _find_entry_module(workdir)
        sys.path.insert(0, str(module_path.parent))
        spec = importlib.util.spec_from_file_location("modelport_user_model", module_path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cls = _find_model_class(module)
        init = inspect.signature(cls)
        self.model = cls(str(module_path.parent)) if init.parameters else cls()

    def signature(self) -> dict[str, Any]:
        return {"inputs": [], "outputs": []}

    def predict(self, columns: Columns, outputs: frozenset[str] | None = None) -> Columns:
        import pandas as pd

        frame = pd.DataFrame({k: list(v) if v.ndim > 1 else v for k, v in columns.items()})
        result = self.model.predict(frame)
        if not isinstance(result, pd.DataFrame):
            raise TypeError(f"predict returned {type(result).__name__}, expected a pandas DataFrame")
        return {str(c): _column_array(result[c]) for c in result.columns}


def _checked(matrix: np.ndarray) -> np.ndarray:
    if matrix.dtype.kind == "f" and not np.isfinite(matrix).all():
        raise ValueError("the input holds NaN or infinite values")
    return matrix


def _column_array(series: Any) -> np.ndarray:
    values = series.to_numpy()
    if values.dtype == object and len(values) and isinstance(values[0], (list, np.ndarray)):
        try:
            return np.stack([np.asarray(v) for v in values])
        except ValueError:
            return values
    return values


def _find_entry_module(workdir: Path) -> Path:
    for name in _PYTHON_ENTRY_MODULES:
        if (workdir / name).is_file():
            return workdir / name
    top = sorted(p for p in workdir.glob("*.py"))
    if len(top) == 1:
        return top[0]
    nested = sorted(p for p in workdir.rglob("*.py") if p.name in _PYTHON_ENTRY_MODULES)
    if nested:
        return nested[0]
    raise FileNotFoundError("no entry module: the model needs main.py, model.py or a single .py file at its root")


def _find_model_class(module: Any) -> type:
    for _, value in vars(module).items():
        if inspect.isclass(value) and value.__module__ == module.__name__ and callable(getattr(value, "predict", None)):
            return value
    raise TypeError("the module defines no class with a predict(DataFrame) method")


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


class FunctionRuntime:
    """A plain Python function called with keyword arguments from a JSON object (a Dataiku "python function"
    endpoint); it answers with any JSON-serialisable value. Raw bytes in and out, one call per request."""

    def __init__(self, path: Path, function: str) -> None:
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(f"modelport_function_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.function = getattr(module, function, None)
        if not callable(self.function):
            raise AttributeError(f"{path.name} defines no function {function!r}")
        self.parameters = inspect.signature(self.function)

    def signature(self) -> dict[str, Any]:
        return {"inputs": [], "outputs": [], "parameters": list(self.parameters.parameters)}

    def predict(self, columns: Columns, outputs: frozenset[str] | None = None) -> Columns:
        raise TypeError("a python function endpoint is called with keyword arguments, not columns")

    def invoke(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        import json

        from modelport.serving.handlers import HandlerError

        try:
            arguments = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise HandlerError(f"the body is not a JSON object: {exc}") from None
        if not isinstance(arguments, dict):
            raise HandlerError("the body must be a JSON object of keyword arguments")
        try:
            self.parameters.bind(**arguments)
        except TypeError as exc:
            raise HandlerError(f"the arguments do not fit the function: {exc}") from None
        result = self.function(**arguments)
        try:
            return json.dumps(result, default=_plain_json).encode(), "application/json"
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the function returned a value that is not JSON-serialisable: {exc}") from None


def _plain_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def load_runtime(framework: str, path: Path, workdir: Path, *, entry: str = "") -> Runtime:
    if framework == "onnx":
        return OnnxRuntime(path)
    if framework == "sklearn":
        return SklearnRuntime(path)
    if framework == "xgboost":
        return XGBoostRuntime(path)
    if framework == "python":
        return PythonRuntime(path, workdir)
    if framework == "python-function":
        return FunctionRuntime(path, entry)  # type: ignore[return-value]
    if framework == "sagemaker-handler":
        from modelport.serving.handlers import HandlerRuntime

        import os

        return HandlerRuntime(path, os.environ.get("SAGEMAKER_PROGRAM", "inference.py"))  # type: ignore[return-value]
    raise ValueError(f"unknown framework {framework!r}")
