"""Dataiku prediction API on the inference fast path: `POST /public/api/v1/{service}/{endpoint}/predict`,
`/predict-multi` and `/run` (python function endpoints).

Which generation answers: `dispatch.forcedGeneration` when given; else, for a hash-based mapping, the hash of
`dispatch.dispatchKey` (the same key always reaches the same generation); else the mapping's probabilities. Callers
authenticate with a service key allowed for the service, or any modelport token (Basic with the key as user name,
or Bearer).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from modelport.api import errors as error_faces
from modelport.api import fastpath, gate
from modelport.api.dataiku.errors import PUBLIC_PREFIX, credential, render
from modelport.domain.bundles import BundleEndpoint
from modelport.domain.errors import Forbidden, InvalidInput, ModelportError, NotFound, NotReady
from modelport.serving.codecs import decoder
from modelport.serving.plane import LiveDeployment, Variant
from modelport.serving.replica import BatchRejected
from modelport.services.dataiku import ServiceView

PREFIX = "/public/api/v1/"

error_faces.register_face(PUBLIC_PREFIX, render)


async def _any_key(request: Request) -> None:
    """Other routes under the prediction API (not served by the fast path): any valid key, before the body."""
    auth = request.app.state.platform.auth
    key = credential(request.headers.get("authorization", ""))
    auth.cached(key) or await run_in_threadpool(auth.authenticate, key)


gate.register(PUBLIC_PREFIX, gate.Policy(_any_key))


class FunctionFailed(ModelportError):
    status = 500
    code = "FunctionFailed"


async def _caller(request: fastpath.Request) -> None:
    """A key allowed for the service in the path, checked from the headers before the body is read."""
    service = request.path[len(PREFIX):].partition("/")[0]
    await _authorise(request, service)


async def _authorise(request: fastpath.Request, service: str) -> None:
    auth = request.platform.auth
    key = credential(request.header(b"authorization"))
    principal = auth.cached(key) or await run_in_threadpool(auth.authenticate, key)
    if not principal.may_call(service):
        raise Forbidden(f"this key may not call service {service!r}")


@decoder
def _parse(request: fastpath.Request, suffix: str) -> tuple[str, str, Any]:
    service, _, endpoint = request.path[len(PREFIX):-len(suffix)].partition("/")
    if not service or not endpoint or "/" in endpoint:
        raise NotFound(f"no endpoint at {request.path}")
    try:
        body = orjson.loads(request.body) if request.body.strip() else {}
    except orjson.JSONDecodeError:
        raise InvalidInput("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    return service, endpoint, body


def _route(request: fastpath.Request, service: str, endpoint: str, body: dict[str, Any]
           ) -> tuple[ServiceView, LiveDeployment, Variant, BundleEndpoint]:
    view = request.platform.dataiku.views.get(service)
    if view is None:
        raise NotFound(f"service {service!r} not found", field="serviceId")
    if not view.enabled:
        raise NotFound(f"service {service!r} is disabled", field="serviceId")
    if view.mapping is None:
        raise NotFound(f"service {service!r} has no active generation: switch it to one", field="serviceId")
    live = request.platform.plane.routes.get(f"dataiku:{service}/{endpoint}")
    if live is None:
        raise NotFound(f"service {service!r} has no endpoint {endpoint!r}", field="endpointId")
    variant = live.pick(_target(view, body.get("dispatch")))
    definition = view.generations[variant.name].endpoint(endpoint)
    assert definition is not None
    return view, live, variant, definition


@decoder
def _target(view: ServiceView, dispatch: Any) -> str | None:
    assert view.mapping is not None
    if dispatch is not None and not isinstance(dispatch, dict):
        raise InvalidInput("dispatch must be an object", field="dispatch")
    forced = dispatch.get("forcedGeneration") if dispatch else None
    if forced is not None:
        if not isinstance(forced, str) or forced not in view.live:
            raise InvalidInput(f"forcedGeneration {forced!r} is not a loaded generation of service {view.name!r}",
                               field="dispatch.forcedGeneration")
        return forced
    if view.mapping.hash_based:
        key = dispatch.get("dispatchKey") if dispatch else None
        if key is None or isinstance(key, (dict, list)):
            raise InvalidInput("this service dispatches by hash: send dispatch.dispatchKey",
                               field="dispatch.dispatchKey")
        return view.mapping.by_hash(str(key))
    return None  # by probability: the plane's weighted pick


@decoder
def _columns(definition: BundleEndpoint, variant: Variant, records: list[Any]) -> dict[str, np.ndarray]:
    """Features in the bundle's order, shaped as the loaded model takes them."""
    rows = []
    for i, features in enumerate(records):
        if not isinstance(features, dict):
            raise InvalidInput(f"record {i}: features must be an object", field="features")
        try:
            rows.append([features[name] for name in definition.features])
        except KeyError as exc:
            raise InvalidInput(f"record {i}: feature {exc.args[0]!r} is missing", field=f"features.{exc.args[0]}") \
                from None
    try:
        matrix = np.array(rows, dtype=np.float64).reshape(len(rows), len(definition.features))
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput("every feature must be a number", field="features") from None
    if not np.isfinite(matrix).all():
        raise InvalidInput("features must be finite numbers (no null, NaN or infinity)", field="features")
    inputs = (variant.input_signature or {}).get("inputs") or [{"name": "inputs", "shape": [-1, -1]}]
    if len(inputs) == 1 and len(inputs[0].get("shape") or []) == 2:
        return {inputs[0]["name"]: matrix}
    index = {name: j for j, name in enumerate(definition.features)}
    missing = [spec["name"] for spec in inputs if spec["name"] not in index]
    if missing:
        raise InvalidInput(f"the model takes feature {missing[0]!r}, which the endpoint does not declare")
    return {spec["name"]: matrix[:, index[spec["name"]]] for spec in inputs}


def _results(definition: BundleEndpoint, variant: Variant, outputs: dict[str, np.ndarray], rows: int) -> list[dict]:
    if rows == 0:
        return []
    predictions = next((outputs[n] for n in ("predictions", "label", "output_label", "variable") if n in outputs),
                       None)
    probabilities = next((outputs[n] for n in ("probabilities", "output_probability") if n in outputs), None)
    if predictions is None and probabilities is None:
        predictions = next(iter(outputs.values()))
    if definition.task == "regression":
        assert predictions is not None
        return [{"prediction": float(v)} for v in np.asarray(predictions).reshape(rows, -1)[:, 0].tolist()]
    classes = list(definition.classes) if definition.classes is not None else None
    if classes is None:
        model = variant.models()[-1] if variant.models() else {}
        classes = (model.get("signature") or {}).get("classes") or None
    labels = [str(c) for c in classes] if classes else None
    results = []
    probas = np.asarray(probabilities, dtype=np.float64).reshape(rows, -1) if probabilities is not None else None
    for i in range(rows):
        result: dict[str, Any] = {}
        if probas is not None:
            names = labels if labels and len(labels) == probas.shape[1] else [str(j) for j in range(probas.shape[1])]
            result["probas"] = dict(zip(names, probas[i].tolist()))
        if predictions is not None:
            value = np.asarray(predictions).reshape(rows, -1)[i, 0]
            value = value.item() if isinstance(value, np.generic) else value
            if labels and isinstance(value, (int, float)) and not isinstance(value, bool) and value == int(value) \
                    and str(value) not in labels and 0 <= int(value) < len(labels):
                value = labels[int(value)]  # a class index (xgboost, onnx without labels)
            result["prediction"] = str(value)
        else:
            result["prediction"] = max(result["probas"], key=result["probas"].get)
        results.append(result)
    return results


def _context(service: str, endpoint: str, variant: Variant) -> dict[str, Any]:
    return {"serviceId": service, "endpointId": endpoint, "serviceGeneration": variant.name}


async def _predict_rows(request: fastpath.Request, suffix: str, multi: bool) -> fastpath.Reply:
    service, endpoint, body = _parse(request, suffix)
    _, live, variant, definition = _route(request, service, endpoint, body)
    if definition.type != "prediction":
        raise InvalidInput(f"endpoint {endpoint!r} is a python function: call .../{endpoint}/run")
    if multi:
        items = body.get("items")
        if not isinstance(items, list):
            raise InvalidInput("items must be a list of {features: {...}}", field="items")
        records = [item.get("features") if isinstance(item, dict) else None for item in items]
    else:
        if "features" not in body:
            raise InvalidInput("features is required", field="features")
        records = [body["features"]]
    columns = _columns(definition, variant, records)
    try:
        result = await request.platform.plane.infer(live, columns, len(records), target=variant.name)
    except BatchRejected as exc:
        raise InvalidInput(str(exc)) from None
    results = _results(definition, variant, result.outputs, len(records))
    context = _context(service, endpoint, variant)
    reply = {"results": results} if multi else {"result": results[0]}
    reply["apiContext"] = context
    timing = sum(result.elapsed) / 1000
    reply["timing"] = {"preProcessing": 0, "predicting": int(timing), "wait": 0}
    return fastpath.Reply(orjson.dumps(reply))


async def predict(request: fastpath.Request) -> fastpath.Reply:
    return await _predict_rows(request, "/predict", multi=False)


async def predict_multi(request: fastpath.Request) -> fastpath.Reply:
    return await _predict_rows(request, "/predict-multi", multi=True)


async def run(request: fastpath.Request) -> fastpath.Reply:
    """The body is the function's keyword arguments; the reply is what it returned, as JSON."""
    service, endpoint, body = _parse(request, "/run")
    _, live, variant, definition = _route(request, service, endpoint, body)
    if definition.type != "python-function":
        raise InvalidInput(f"endpoint {endpoint!r} is a prediction endpoint: call .../{endpoint}/predict")
    try:
        payload, _, _ = await request.platform.plane.invoke_raw(live, request.body, "application/json",
                                                                "application/json", target=variant.name)
    except BatchRejected as exc:
        if exc.kind == "input":
            raise InvalidInput(str(exc)) from None
        raise FunctionFailed(f"the function failed: {exc}") from None
    except NotReady:
        raise
    return fastpath.Reply(payload, headers=((b"x-dku-generation", variant.name.encode()),))


_IRIS = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def _operation(op: str, summary: str, endpoint: str, example: dict[str, Any]) -> dict[str, Any]:
    return {"operationId": f"dataiku_{op}", "summary": summary, "tags": ["dataiku"],
            "parameters": [{"name": "serviceId", "in": "path", "required": True, "schema": {"type": "string"},
                            "example": "iris"},
                           {"name": "endpointId", "in": "path", "required": True, "schema": {"type": "string"},
                            "example": endpoint}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"type": "object"}, "example": example}}},
            "responses": {"200": {"description": "the result", "content": {"application/json": {"schema": {}}}}}}


fastpath.register(fastpath.Route(PREFIX, "/predict", predict, "/public/api/v1/{serviceId}/{endpointId}/predict",
                                 _operation("predict", "Dataiku predict one record", "iris",
                                            {"features": _IRIS}), authenticate=False, gate=_caller))
fastpath.register(fastpath.Route(PREFIX, "/predict-multi", predict_multi,
                                 "/public/api/v1/{serviceId}/{endpointId}/predict-multi",
                                 _operation("predict_multi", "Dataiku predict records", "iris",
                                            {"items": [{"features": _IRIS}]}), authenticate=False, gate=_caller))
fastpath.register(fastpath.Route(PREFIX, "/run", run, "/public/api/v1/{serviceId}/{endpointId}/run",
                                 _operation("run_function", "Dataiku run a python function endpoint", "score",
                                            {"a": 1, "b": 2}),
                                 authenticate=False, gate=_caller))
