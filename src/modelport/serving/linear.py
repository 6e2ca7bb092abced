"""Closed-form predict for linear scikit-learn models, verified against the estimator when the model loads.

scikit-learn 1.9 spends about 200 µs of every predict call on input validation and array-API dispatch, while the
arithmetic of a linear model on a batch of a few dozen rows takes about 5 µs: for the small models people serve,
that overhead is most of a replica's time. The runtime already checks shape and finiteness, so for estimators whose
predict is plain linear algebra on fitted attributes, it computes the same thing with numpy. Each shortcut is used
only after it reproduced the estimator's own outputs on a probe batch; anything else goes through scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]


def shortcuts(model: Any) -> tuple[Predict | None, Predict | None]:
    """(predict, predict_proba) computed from the fitted attributes, each None where no verified shortcut exists."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.linear_model._base import LinearClassifierMixin, LinearModel, MultiOutputLinearModel
    except ImportError:  # pragma: no cover - scikit-learn moved its private base classes
        return None, None
    coef = getattr(model, "coef_", None)
    intercept = getattr(model, "intercept_", None)
    if not isinstance(coef, np.ndarray) or coef.dtype != np.float64 or getattr(model, "n_features_in_", None) is None:
        return None, None
    cls = type(model)
    weights = np.ascontiguousarray(coef.T if coef.ndim == 2 else coef)
    bias = np.asarray(intercept, dtype=coef.dtype) if intercept is not None else np.zeros((), coef.dtype)

    predict: Predict | None = None
    proba: Predict | None = None
    if isinstance(model, LinearClassifierMixin) and _inherits(cls, "predict", LinearClassifierMixin) \
            and _inherits(cls, "decision_function", LinearClassifierMixin):
        classes = np.asarray(model.classes_)

        def scores(x: np.ndarray) -> np.ndarray:
            s = x @ weights + bias
            return s.reshape(-1) if s.ndim > 1 and s.shape[1] == 1 else s

        def predict(x: np.ndarray) -> np.ndarray:  # type: ignore[no-redef]
            s = scores(x)
            return classes[(s > 0).astype(np.intp)] if s.ndim == 1 else classes[s.argmax(axis=1)]

        if cls is LogisticRegression or (issubclass(cls, LogisticRegression)
                                         and _inherits(cls, "predict_proba", LogisticRegression)):
            def proba(x: np.ndarray) -> np.ndarray:  # type: ignore[no-redef]
                s = scores(x)
                if s.ndim == 1:  # binary: the logistic of the decision, as [P(class 0), P(class 1)]
                    p = 1.0 / (1.0 + np.exp(-s))
                    return np.column_stack([1.0 - p, p])
                s = np.exp(s - s.max(axis=1, keepdims=True))
                return s / s.sum(axis=1, keepdims=True)
    elif isinstance(model, LinearModel) and _inherits(cls, "_decision_function", LinearModel) \
            and (_inherits(cls, "predict", LinearModel) or _inherits(cls, "predict", MultiOutputLinearModel)):
        def predict(x: np.ndarray) -> np.ndarray:  # type: ignore[no-redef]
            return x @ weights + bias

    probe = _probe(int(model.n_features_in_), coef.dtype)
    if predict is not None and not _same(predict(probe), model.predict(probe), exact=True):
        predict = None
    if proba is not None and not _same(proba(probe), model.predict_proba(probe), exact=False):
        proba = None
    return predict, proba


def _inherits(cls: type, method: str, base: type) -> bool:
    """The class uses `base`'s own implementation of `method` (a subclass that overrides it may compute otherwise)."""
    return getattr(cls, method, None) is getattr(base, method, None)


def _probe(width: int, dtype: np.dtype) -> np.ndarray:
    """Rows spread widely enough to land on every side of every decision boundary of a reasonable model."""
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0, scale, (32, width)) for scale in (0.1, 1.0, 10.0, 100.0)]).astype(dtype)


def _same(ours: np.ndarray, theirs: Any, *, exact: bool) -> bool:
    theirs = np.asarray(theirs)
    if ours.shape != theirs.shape or ours.dtype != theirs.dtype:
        return False
    if exact and ours.dtype.kind not in "fc":
        return bool(np.array_equal(ours, theirs))
    return bool(np.allclose(ours, theirs, rtol=1e-9, atol=1e-12))
