"""The sklearn runtime's closed-form shortcuts must give exactly what scikit-learn gives, or not be used."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

from modelport.serving.linear import shortcuts
from modelport.serving.runtimes import SklearnRuntime


class Shifted(LogisticRegression):
    """A subclass that changes predict: a shortcut from its fitted coefficients would answer wrongly."""

    def predict(self, X):
        return super().predict(X)[::-1].copy()


def _fitted() -> list[tuple[str, object, np.ndarray]]:
    x, y = load_iris(return_X_y=True)
    bx, by = load_breast_cancer(return_X_y=True)
    rx, ry = load_diabetes(return_X_y=True)
    return [
        ("multiclass", LogisticRegression(max_iter=500).fit(x, y), x),
        ("binary", LogisticRegression(max_iter=5000).fit(bx, by), bx),
        ("string labels", LogisticRegression(max_iter=500).fit(x, np.array(["setosa", "versicolor", "virginica"])[y]), x),
        ("regression", LinearRegression().fit(rx, ry), rx),
        ("two targets", LinearRegression().fit(rx, np.c_[ry, 2 * ry]), rx),
    ]


@pytest.mark.parametrize("name,model,x", _fitted(), ids=[f[0] for f in _fitted()])
def test_shortcuts_reproduce_scikit_learn(name, model, x):
    predict, proba = shortcuts(model)
    assert predict is not None
    if model.predict(x).dtype.kind in "fc":
        np.testing.assert_allclose(predict(x), model.predict(x), rtol=1e-9)
    else:
        np.testing.assert_array_equal(predict(x), model.predict(x))
    if hasattr(model, "predict_proba"):
        assert proba is not None
        np.testing.assert_allclose(proba(x), model.predict_proba(x), rtol=1e-9, atol=1e-12)


def test_no_shortcut_where_the_estimator_computes_otherwise():
    x, y = load_iris(return_X_y=True)
    assert shortcuts(Shifted(max_iter=500).fit(x, y))[0] is None
    assert shortcuts(RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)) == (None, None)


def test_runtime_answers_like_the_model_on_any_input_dtype(tmp_path):
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    joblib.dump(model, tmp_path / "model.joblib")
    runtime = SklearnRuntime(tmp_path / "model.joblib")
    predict, proba = shortcuts(model)
    for batch in (x, x.astype(np.float32), x.astype(np.int64)):
        np.testing.assert_array_equal(predict(batch), model.predict(batch))
        np.testing.assert_allclose(proba(batch), model.predict_proba(batch), rtol=1e-9)
        out = runtime.predict({"inputs": batch})
        np.testing.assert_array_equal(out["predictions"], model.predict(batch))
        np.testing.assert_allclose(out["probabilities"], model.predict_proba(batch), rtol=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        runtime.predict({"inputs": np.full((2, 4), np.nan)})

