"""The Dataiku face with the unmodified official client (dataiku-api-client) against a real server: bundles
imported, generations preloaded and switched, predictions from real models in replica processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path

import dataikuapi
import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from dataikuapi.utils import DataikuException
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from tests.support import Server, seed_document

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPECIES = ["setosa", "versicolor", "virginica"]
FUNCTION = '''
def score(a, b, scale=1.0):
    if a < 0:
        raise ValueError("a must not be negative")
    return {"sum": (a + b) * scale, "labels": ["x", "y"]}
'''


@pytest.fixture(scope="module")
def imports(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dataiku-imports")


@pytest.fixture(scope="module")
def server_env(imports: Path) -> dict[str, str]:
    return {"MODELPORT_DATAIKU_IMPORT_ROOTS": json.dumps([str(imports)])}


def iris_frame() -> tuple[pd.DataFrame, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    return pd.DataFrame(x, columns=FEATURES), np.array(SPECIES)[y]


def bundle(folder: Path, version: str, model, *, function: bool = True, cli: bool = False) -> Path:
    """A bundle folder with an iris classifier endpoint (and a python function endpoint), zipped."""
    source = folder / f"src-{version}"
    (source / "models").mkdir(parents=True, exist_ok=True)
    joblib.dump(model, source / "models" / "iris.joblib")
    endpoints = [{"id": "iris", "type": "prediction", "framework": "sklearn", "model": "models/iris.joblib",
                  "task": "classification", "features": FEATURES}]
    if function:
        (source / "functions").mkdir(exist_ok=True)
        (source / "functions" / "score.py").write_text(FUNCTION)
        endpoints.append({"id": "score", "type": "python-function", "module": "functions/score.py",
                          "function": "score"})
    (source / "modelport-bundle.json").write_text(json.dumps(
        {"format": 1, "version": version, "description": f"iris {version}", "endpoints": endpoints}))
    output = folder / f"bundle-{version}.zip"
    if cli:
        result = subprocess.run([sys.executable, "-m", "modelport.cli", "bundle", "build", str(source), "-o",
                                 str(output)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        from modelport.services.bundles import build_bundle

        build_bundle(source, output)
    return output


@pytest.fixture(scope="module")
def models():
    x, y = iris_frame()
    return {"v1": LogisticRegression(max_iter=500).fit(x, y),
            "v2": DummyClassifier(strategy="constant", constant="virginica").fit(x, y)}


@pytest.fixture(scope="module")
def bundles(imports: Path, models) -> dict[str, Path]:
    return {"v1": bundle(imports, "v1", models["v1"], cli=True), "v2": bundle(imports, "v2", models["v2"])}


def admin(server: Server) -> dataikuapi.APINodeAdminClient:
    return dataikuapi.APINodeAdminClient(server.url + "/", server.token)  # trailing slash: the client's `//` quirk


def generation_of(reply: dict) -> str:
    return reply["apiContext"]["serviceGeneration"]


@pytest.mark.database
def test_official_clients_run_the_whole_lifecycle(server: Server, bundles, models) -> None:
    client = admin(server)
    client.create_service("churn")
    service = client.service("churn")
    service.import_generation_from_archive(str(bundles["v1"]))
    service.import_generation_from_archive(str(bundles["v2"]))
    generations = {g["generationId"]: g for g in service.list_generations()}
    assert set(generations) == {"v1", "v2"} and not any(g["active"] for g in generations.values())

    service.preload_generation("v1")
    assert {g["generationId"]: g["preloaded"] for g in service.list_generations()} == {"v1": True, "v2": False}
    service.switch_to_single_generation("v1")

    key = client.auth().add_key(label="predictor")["key"]
    user = dataikuapi.APINodeClient(server.url, "churn", api_key=key)
    x, _ = iris_frame()
    record = x.iloc[100].to_dict()
    answer = user.predict_record("iris", record)
    expected = models["v1"].predict(x.iloc[[100]])[0]
    assert answer["result"]["prediction"] == expected and generation_of(answer) == "v1"
    assert set(answer["result"]["probas"]) == set(SPECIES)
    assert abs(sum(answer["result"]["probas"].values()) - 1) < 1e-9
    many = user.predict_records("iris", [{"features": x.iloc[i].to_dict()} for i in range(0, 150, 10)])
    assert [r["prediction"] for r in many["results"]] == list(models["v1"].predict(x.iloc[list(range(0, 150, 10))]))
    assert user.run_function("score", a=1, b=2, scale=3) == {"sum": 9.0, "labels": ["x", "y"]}

    switched = service.switch_to_newest()
    assert switched["activeGeneration"] == "v2"
    assert user.predict_record("iris", record)["result"]["prediction"] == "virginica"

    service.set_generations_mapping({"entries": [{"generation": "v1", "proba": 0.5},
                                                 {"generation": "v2", "proba": 0.5}]})
    service.disable()
    with pytest.raises(DataikuException, match="disabled"):
        user.predict_record("iris", record)
    service.enable()
    listed = {s["serviceId"]: s for s in client.list_services()}
    assert listed["churn"]["enabled"] is True and listed["churn"]["generationCount"] == 2
    assert listed["churn"]["mapping"]["entries"] == [{"generation": "v1", "proba": 0.5},
                                                    {"generation": "v2", "proba": 0.5}]
    assert client.get_metrics()["serviceMetrics"]["churn"]["requestCount"] >= 4
    keys = client.auth().list_keys()
    assert any(k["label"] == "predictor" for k in keys) and all("key" not in k for k in keys)
    client.auth().delete_key(key)
    with pytest.raises(DataikuException, match="Unauthenticated"):
        user.predict_record("iris", record)

    service.delete()
    assert "churn" not in {s["serviceId"] for s in client.list_services()}
    reply = httpx.post(f"{server.url}/public/api/v1/churn/iris/predict", headers=server.headers,
                       json={"features": record})
    assert reply.status_code == 404 and reply.json()["errorType"] == "NotFound"


def test_the_seed_dataiku_workflow_runs_verbatim(server: Server, bundles) -> None:
    workflow = seed_document("arazzo/dataiku-import-and-preload-generation-workflow.yml")
    admin(server).create_service("seedflow")
    args = [sys.executable, "-m", "modelport.cli", "workflow", "run",
            str(workflow),
            "--server", f"dssApiNodeAdminApi={server.url}/admin/api", "--json",
            "--input", f"apiKey={server.token}", "--input", "serviceId=seedflow",
            "--input", f"bundleFile=@{bundles['v2']}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["outputs"] == {"serviceId": "seedflow", "generationId": "v2"}
    described = httpx.get(f"{server.url}/admin/api/services/seedflow", headers=server.headers).json()
    assert described["activeGeneration"] == "v2" and described["enabled"] is True
    reply = httpx.post(f"{server.url}/public/api/v1/seedflow/iris/predict", headers=server.headers,
                       json={"features": dict(zip(FEATURES, [5.1, 3.5, 1.4, 0.2]))})
    assert reply.status_code == 200 and reply.json()["result"]["prediction"] == "virginica"


def test_mapping_splits_traffic_and_hash_dispatch_is_stable(server: Server, bundles) -> None:
    client = admin(server)
    client.create_service("ab")
    service = client.service("ab")
    for version in ("v1", "v2"):
        service.import_generation_from_archive(str(bundles[version]))
    service.set_generations_mapping({"entries": [{"generation": "v1", "proba": 0.5},
                                                 {"generation": "v2", "proba": 0.5}]})
    record = {"features": dict(zip(FEATURES, [6.0, 2.9, 4.5, 1.5]))}
    with httpx.Client(base_url=f"{server.url}/public/api/v1/ab/iris", headers=server.headers) as http:
        counts = Counter(generation_of(http.post("/predict", json=record).json()) for _ in range(2000))
        assert abs(counts["v1"] / 2000 - 0.5) <= 0.05, counts

        forced = http.post("/predict", json={**record, "dispatch": {"forcedGeneration": "v2"}}).json()
        assert generation_of(forced) == "v2" and forced["result"]["prediction"] == "virginica"

        service.set_generations_mapping({"entries": [{"generation": "v1", "proba": 0.5},
                                                     {"generation": "v2", "proba": 0.5}], "hashBased": True})
        missing = http.post("/predict", json=record)
        assert missing.status_code == 400 and "dispatchKey" in missing.json()["message"]
        seen = {}
        for key in [f"customer-{i}" for i in range(200)] * 3:
            got = generation_of(http.post("/predict", json={**record, "dispatch": {"dispatchKey": key}}).json())
            assert seen.setdefault(key, got) == got
        assert 0.3 < Counter(seen.values())["v1"] / 200 < 0.7

    with pytest.raises(DataikuException, match="sum to 1"):
        service.set_generations_mapping({"entries": [{"generation": "v1", "proba": 0.7},
                                                     {"generation": "v2", "proba": 0.7}]})
    with pytest.raises(DataikuException, match="NotFound"):
        service.set_generations_mapping({"entries": [{"generation": "v9", "proba": 1}]})


def test_switch_under_load_fails_nothing_and_stays_fast(server: Server, bundles) -> None:
    client = admin(server)
    client.create_service("live")
    service = client.service("live")
    for version in ("v1", "v2"):
        service.import_generation_from_archive(str(bundles[version]))
    service.switch_to_single_generation("v1")
    service.preload_generation("v2")

    samples: list[tuple[float, float, int, str]] = []  # (sent at, latency, status, generation)
    stop = threading.Event()
    body = {"features": dict(zip(FEATURES, [6.0, 2.9, 4.5, 1.5]))}

    def client_loop() -> None:
        with httpx.Client(base_url=f"{server.url}/public/api/v1/live/iris", headers=server.headers) as http:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    reply = http.post("/predict", json=body)
                    status, generation = reply.status_code, reply.json().get("apiContext", {}).get("serviceGeneration")
                except httpx.HTTPError:
                    status, generation = 0, ""
                samples.append((started, time.perf_counter() - started, status, generation))

    threads = [threading.Thread(target=client_loop) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(3)
    switched_at = time.perf_counter()
    service.switch_to_single_generation("v2")
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join()

    failures = [s for s in samples if s[2] != 200]
    assert not failures, failures[:5]
    steady = sorted(s[1] for s in samples if switched_at - 2 < s[0] < switched_at)
    after = sorted(s[1] for s in samples if switched_at <= s[0] < switched_at + 1)
    p99 = lambda values: values[int(len(values) * 0.99) - 1]  # noqa: E731
    assert p99(after) <= 2 * p99(steady), (p99(steady), p99(after))
    assert samples[-1][3] == "v2" and {s[3] for s in samples} == {"v1", "v2"}


def test_bad_bundles_are_refused_and_import_nothing(server: Server, imports: Path, tmp_path: Path, models) -> None:
    client = admin(server)
    client.create_service("strict")
    service = client.service("strict")
    good = bundle(tmp_path, "v7", models["v1"], function=False)
    url = f"{server.url}/admin/api/services/strict/generations"

    def upload(data: bytes) -> httpx.Response:
        return httpx.post(url, headers=server.headers, files={"file": ("b.zip", data, "application/zip")}, timeout=60)

    def rezip(changes: dict[str, bytes | None]) -> bytes:
        out = tmp_path / "changed.zip"
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
            for name in src.namelist():
                if name not in changes:
                    dst.writestr(name, src.read(name))
            for name, data in changes.items():
                if data is not None:
                    dst.writestr(name, data)
        return out.read_bytes()

    manifest = json.loads(zipfile.ZipFile(good).read("modelport-bundle.json"))
    cases = {
        "not a zip": b"hello",
        "no manifest": rezip({"modelport-bundle.json": None}),
        "manifest not json": rezip({"modelport-bundle.json": b"{nope"}),
        "bad version": rezip({"modelport-bundle.json": json.dumps({**manifest, "version": "../x"}).encode()}),
        "missing model file": rezip({"models/iris.joblib": None}),
        "broken model": rezip({"models/iris.joblib": b"not a pickle"}),
        "traversal": rezip({"../evil.py": b"x"}),
        "function missing": rezip({"modelport-bundle.json": json.dumps({**manifest, "endpoints": [
            {"id": "f", "type": "python-function", "module": "f.py", "function": "nope"}]}).encode(),
            "f.py": b"def other():\n    return 1\n"}),
    }
    for label, data in cases.items():
        reply = upload(data)
        assert reply.status_code == 400, (label, reply.status_code, reply.text)
        assert set(reply.json()) == {"errorType", "message", "detailedMessage"}, label
    assert service.list_generations() == []

    assert upload(good.read_bytes()).json()["generationId"] == "v7"
    assert upload(good.read_bytes()).status_code == 409  # the same version twice
    assert httpx.post(url, headers=server.headers, content=b"{}").status_code == 415

    outside = tmp_path / "outside.zip"
    outside.write_bytes(good.read_bytes())
    archive_url = f"{url}/actions/importFromArchive"
    for path in (str(outside), str(imports / ".." / outside.name), "/etc/passwd"):
        assert httpx.post(archive_url, params={"filePath": path}, headers=server.headers).status_code == 403, path
    assert httpx.post(archive_url, params={"filePath": "relative.zip"}, headers=server.headers).status_code == 400
    assert httpx.post(archive_url, headers=server.headers).status_code == 400
    assert [g["generationId"] for g in service.list_generations()] == ["v7"]


def test_bad_requests_get_dataiku_errors_and_change_nothing(server: Server, bundles) -> None:
    client = admin(server)
    client.create_service("guarded")
    service = client.service("guarded")
    service.import_generation_from_archive(str(bundles["v1"]))
    service.switch_to_single_generation("v1")
    base = f"{server.url}/admin/api"
    predict = f"{server.url}/public/api/v1/guarded/iris/predict"
    features = dict(zip(FEATURES, [5.1, 3.5, 1.4, 0.2]))

    assert httpx.get(f"{base}/services").status_code == 401
    assert httpx.get(f"{base}/services", auth=("wrong-key", "")).status_code == 401
    assert httpx.get(f"{base}/health").json()["status"] == "HEALTHY"
    user_token = httpx.post(f"{server.url}/modelport/v1/tokens", headers=server.headers,
                            json={"name": "reader"}).json()["token"]
    assert httpx.get(f"{base}/services", headers={"Authorization": f"Bearer {user_token}"}).status_code == 403
    with pytest.raises(DataikuException, match="AlreadyExists"):
        client.create_service("guarded")
    for bad in ("", "../x", "a b", "x" * 65):
        assert httpx.post(f"{base}/services", headers=server.headers, json={"serviceId": bad}).status_code == 400
    assert httpx.post(f"{base}/services", headers=server.headers, content=b"[1").status_code == 400
    assert httpx.get(f"{base}/services/nope", headers=server.headers).status_code == 404
    assert httpx.post(f"{base}/services/guarded/generations/v9/preload", headers=server.headers).status_code == 404
    assert httpx.delete(f"{base}/services/guarded/generations/v1", headers=server.headers).status_code == 409

    # per-service keys: allowed for one service, refused elsewhere and on every other API
    key = httpx.post(f"{base}/auth/keys", headers=server.headers,
                     json={"label": "only-guarded", "allowedServices": ["guarded"]}).json()
    assert httpx.get(f"{base}/auth/keys/{key['id']}", headers=server.headers).json()["allowedServices"] == ["guarded"]
    assert httpx.post(predict, auth=(key["key"], ""), json={"features": features}).status_code == 200
    assert httpx.post(f"{server.url}/public/api/v1/other/iris/predict", auth=(key["key"], ""),
                      json={"features": features}).status_code == 403
    assert httpx.post(f"{server.url}/v1/api/workspaces/list", headers={"Authorization": f"Bearer {key['key']}"},
                      json={}).status_code == 403
    assert httpx.get(f"{base}/services", auth=(key["key"], "")).status_code == 403

    bad_requests = [
        {"features": {**features, "petal_width": "wide"}},
        {"features": {k: v for k, v in features.items() if k != "petal_width"}},
        {"features": {**features, "petal_width": None}},
        {"features": [1, 2, 3, 4]},
        {},
        {"features": features, "dispatch": {"forcedGeneration": "v9"}},
        {"features": features, "dispatch": "v1"},
    ]
    for body in bad_requests:
        reply = httpx.post(predict, headers=server.headers, json=body)
        assert reply.status_code == 400 and reply.json()["errorType"] == "InvalidInput", (body, reply.text)
    assert httpx.post(predict, headers=server.headers, content=b"{broken").status_code == 400
    assert httpx.post(predict, headers=server.headers, content=b"x" * 30_000_000).status_code == 400
    assert httpx.post(f"{server.url}/public/api/v1/guarded/nope/predict", headers=server.headers,
                      json={"features": features}).status_code == 404
    assert httpx.post(predict).status_code == 401
    multi = f"{server.url}/public/api/v1/guarded/iris/predict-multi"
    empty = httpx.post(multi, headers=server.headers, json={"items": []})  # zero rows in, zero rows out
    assert empty.status_code == 200 and empty.json()["results"] == [], empty.text
    _hostile_bodies_get_dataiku_4xx(server, predict, multi, features)
    run = f"{server.url}/public/api/v1/guarded/score/run"
    assert httpx.post(run, headers=server.headers, json={"a": 1}).status_code == 400  # b is required
    assert httpx.post(run, headers=server.headers, json={"a": 1, "b": 2, "c": 3}).status_code == 400
    assert httpx.post(run, headers=server.headers, json=[1, 2]).status_code == 400
    assert httpx.post(predict.replace("iris", "score"), headers=server.headers, json={"features": features}) \
        .status_code == 400
    failed = httpx.post(run, headers=server.headers, json={"a": -1, "b": 2})
    assert failed.status_code == 500 and "a must not be negative" in failed.json()["message"]

    # after all that, the service still answers as before
    reply = httpx.post(predict, headers=server.headers, json={"features": features})
    assert reply.status_code == 200 and reply.json()["result"]["prediction"] == "setosa"
    assert [g["generationId"] for g in service.list_generations()] == ["v1"]


@pytest.mark.database
def test_services_come_back_after_a_restart(server: Server, bundles) -> None:
    client = admin(server)
    client.create_service("durable")
    service = client.service("durable")
    service.import_generation_from_archive(str(bundles["v1"]))
    service.switch_to_single_generation("v1")
    server.restart()
    user = dataikuapi.APINodeClient(server.url, "durable", api_key=server.token)
    deadline = time.monotonic() + 60
    while True:
        try:
            answer = user.predict_record("iris", dict(zip(FEATURES, [5.1, 3.5, 1.4, 0.2])))
            break
        except DataikuException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert answer["result"]["prediction"] == "setosa" and generation_of(answer) == "v1"


def test_bundle_check_command(tmp_path: Path, models) -> None:
    good = bundle(tmp_path, "v1", models["v1"])
    result = subprocess.run([sys.executable, "-m", "modelport.cli", "bundle", "check", str(good)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "bundle OK: generation v1" in result.stdout, result.stdout + result.stderr
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, b"garbage" if name.endswith(".joblib") else src.read(name))
    result = subprocess.run([sys.executable, "-m", "modelport.cli", "bundle", "check", str(broken)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "bundle refused" in result.stdout


def _hostile_bodies_get_dataiku_4xx(server: Server, predict: str, multi: str, features: dict) -> None:
    """Whatever the body, the prediction API answers 2xx or a 4xx in Dataiku's format, never a 500."""
    import json

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    values = st.recursive(st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats() | st.text(max_size=5),
                          lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                          max_leaves=16)
    hostile_features = st.dictionaries(st.sampled_from(list(features)), values, max_size=4).map(
        lambda f: {**features, **f})
    bodies = (values | st.builds(lambda f: {"features": f}, hostile_features)
              | st.builds(lambda items: {"items": items}, st.lists(st.builds(lambda f: {"features": f},
                                                                             hostile_features) | values, max_size=3))
              | st.builds(lambda f, d: {"features": f, "dispatch": d}, hostile_features, values))
    with httpx.Client(headers=server.headers, timeout=30) as client:
        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(bodies, st.sampled_from([predict, multi]), st.integers(0, 3000))
        def check(body: object, url: str, depth: int) -> None:
            content = json.dumps(body).encode() if depth < 2000 else b"[" * depth + b"]" * depth
            reply = client.post(url, content=content)
            assert reply.status_code < 500, (url, content[:200], reply.text)
            if reply.status_code >= 400:
                assert {"errorType", "message"} <= set(reply.json())

        check()


def test_a_service_deleted_during_an_import_is_a_404_not_a_500(server: Server, bundles) -> None:
    """The import checks the bundle (seconds: its models load in another process) before recording it; a service
    deleted meanwhile was a foreign-key failure, a 500 (found by the OpenAPI conformance run)."""
    api = f"{server.url}/admin/api"
    assert httpx.post(f"{api}/services", json={"serviceId": "short-lived"}, headers=server.headers).status_code == 200
    replies: list[httpx.Response] = []
    importer = threading.Thread(target=lambda: replies.append(httpx.post(
        f"{api}/services/short-lived/generations/actions/importFromArchive", params={"filePath": str(bundles["v1"])},
        headers=server.headers, timeout=120)))
    importer.start()
    deleted = httpx.delete(f"{api}/services/short-lived", headers=server.headers, timeout=60)
    importer.join()
    assert deleted.status_code == 204, deleted.text
    assert replies[0].status_code in (200, 404), replies[0].text
    if replies[0].status_code == 404:
        assert replies[0].json()["errorType"] == "NotFound"
    assert httpx.get(f"{api}/services/short-lived", headers=server.headers).status_code == 404
