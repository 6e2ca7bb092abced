"""Model versions: frameworks, load statuses and how a framework's artifact is recognised."""

from __future__ import annotations

import enum

from modelport.domain.errors import InvalidInput


class Framework(str, enum.Enum):
    ONNX = "onnx"
    SKLEARN = "sklearn"
    XGBOOST = "xgboost"
    PYTHON = "python"


# Names used by Wallaroo's SDK and docs for the same runtimes.
_ALIASES = {"custom": Framework.PYTHON, "python": Framework.PYTHON, "scikit-learn": Framework.SKLEARN}


def parse_framework(value: object, *, field: str = "conversion.framework") -> Framework:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    key = value.strip().lower()
    if key in _ALIASES:
        return _ALIASES[key]
    try:
        return Framework(key)
    except ValueError:
        known = ", ".join(f.value for f in Framework)
        raise InvalidInput(f"{field} {value!r} is not supported; use one of: {known}", field=field) from None


class ModelStatus(str, enum.Enum):
    """The Wallaroo model version lifecycle: a version is usable once a real load in a separate process worked."""

    PENDING_LOAD = "pending_load_native"
    ATTEMPTING_LOAD = "attempting_load_native"
    READY = "ready"
    ERROR = "error"
