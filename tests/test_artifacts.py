"""The artifact store in a folder or an S3-compatible bucket (moto's server on loopback), and a platform whose
artifacts live in a bucket: a second server with a home of its own serves what the first one stored."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from modelport.domain.errors import InvalidInput, NotFound, PayloadTooLarge
from modelport.store.artifacts import ArtifactStore, S3ArtifactStore, open_artifact_store
from tests.support import (Server, build_sklearn_classifier, create_pipeline, deploy, free_port, infer_records,
                           upload_model, wait_status)

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "artifacts", "AWS_SECRET_ACCESS_KEY": "artifacts-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3-compatible server on loopback (moto's), standing in for AWS S3 or MinIO, with one bucket."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    moto.start()
    url = f"http://127.0.0.1:{port}"
    for key, value in CREDENTIALS.items():
        monkeypatch_module.setenv(key, value)
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket="platform")
    yield url
    moto.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_a_folder_store_keeps_one_copy_per_digest(tmp_path: Path) -> None:
    store = open_artifact_store(str(tmp_path / "blobs"), tmp_path / "unused")
    assert type(store) is ArtifactStore
    first = store.put(io.BytesIO(b"model bytes"))
    again = store.put(io.BytesIO(b"model bytes"))
    assert first.created and not again.created and first.path == again.path == store.path_for(first.sha256)
    assert first.sha256 == hashlib.sha256(b"model bytes").hexdigest() and first.path.read_bytes() == b"model bytes"
    with pytest.raises(InvalidInput):
        store.put(io.BytesIO(b""))
    with pytest.raises(PayloadTooLarge):
        store.put(io.BytesIO(b"x" * 100), max_bytes=10)
    assert not any((tmp_path / "blobs" / "tmp").iterdir())  # refused uploads leave nothing behind
    store.discard(first)
    assert not first.path.exists()


def test_a_location_is_a_folder_or_a_bucket(tmp_path: Path) -> None:
    for bad in ("https://example.invalid/x", "s3://"):
        with pytest.raises(InvalidInput):
            open_artifact_store(bad, tmp_path)


def test_a_bucket_store_is_read_through_each_servers_cache(s3: str, tmp_path: Path) -> None:
    one = open_artifact_store("s3://platform/unit", tmp_path / "one", s3_endpoint_url=s3)
    two = open_artifact_store("s3://platform/unit", tmp_path / "two", s3_endpoint_url=s3)
    assert isinstance(one, S3ArtifactStore)
    blob = one.put(io.BytesIO(b"shared weights"))
    assert blob.created and not two.put(io.BytesIO(b"shared weights")).created
    fetched = two.path_for(blob.sha256)
    assert fetched.read_bytes() == b"shared weights" and fetched.is_relative_to(tmp_path / "two")

    with pytest.raises(NotFound):
        two.path_for(hashlib.sha256(b"never stored").hexdigest())
    tampered = hashlib.sha256(b"original").hexdigest()
    boto3.client("s3", endpoint_url=s3).put_object(Bucket="platform", Key=f"unit/sha256/{tampered[:2]}/{tampered}",
                                                   Body=b"something else")
    with pytest.raises(InvalidInput, match="does not match"):
        two.path_for(tampered)
    assert not (tmp_path / "two" / "sha256" / tampered[:2] / tampered).exists()

    one.discard(blob)  # a failed transaction takes back what it published
    with pytest.raises(NotFound):
        open_artifact_store("s3://platform/unit", tmp_path / "three", s3_endpoint_url=s3).path_for(blob.sha256)


def test_a_second_server_serves_what_the_first_stored_in_the_bucket(s3: str, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'platform.db'}"  # one database; each server has a home of its own
    env = {"MODELPORT_ARTIFACTS": "s3://platform/models", "MODELPORT_S3_ENDPOINT_URL": s3, **CREDENTIALS}
    first = Server(tmp_path / "first", database_url=database, env=env).start()
    try:
        workspace = first.post("/v1/api/workspaces/create", {"workspace_name": "shared"}).json()["workspace_id"]
        model = build_sklearn_classifier(tmp_path / "iris.joblib")
        version = upload_model(first, workspace, "iris", model, "sklearn")
        pipeline = create_pipeline(first, workspace, "iris", [version])
        name = f"iris-{deploy(first, 'iris', pipeline)}"
        wait_status(first, name)
    finally:
        first.stop()
    assert not (tmp_path / "first" / "artifacts" / "sha256").exists() or not any(
        p.is_file() for p in (tmp_path / "first" / "artifacts" / "sha256").rglob("*"))

    second = Server(tmp_path / "second", database_url=database, env=env).start()
    try:
        wait_status(second, name)  # restored from the database, its model fetched from the bucket
        reply = infer_records(second, name, "iris", [{"features": [5.1, 3.5, 1.4, 0.2]}])
        assert reply.status_code == 200 and reply.json()[0]["out"]["predictions"] == 0, reply.text
        assert (tmp_path / "second" / "artifact-cache" / "sha256" / version["sha"][:2] / version["sha"]).is_file()
    finally:
        second.stop()
