"""Content-addressed artifact store: blobs live at sha256/<2 hex>/<64 hex>, written once, atomically.

Where they live is a setting (MODELPORT_ARTIFACTS): a folder (the default `<home>/artifacts`, or a mount that every
server of a platform shares) or an S3-compatible bucket (`s3://bucket/prefix`). Either way a blob is read as a local
file: with a bucket, each server keeps the blobs it has used in a local cache and fetches the others on first use,
so model loaders, ZIP extraction and replica processes never know where the blob came from.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from modelport.domain.errors import InvalidInput, NotFound, PayloadTooLarge

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    path: Path
    created: bool  # False when an identical blob was already stored


def _check_digest(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise InvalidInput(f"not a sha256 digest: {sha256!r}", field="sha")
    return sha256


def _relative(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256}"


class ArtifactStore:
    """Blobs in a folder. `path_for` gives the local file of a blob; `put` streams one in."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    @property
    def location(self) -> str:
        return str(self.root)

    def path_for(self, sha256: str) -> Path:
        """The local file of the blob (with a bucket, fetched into the cache first: call it off the event loop)."""
        return self.root / _relative(_check_digest(sha256))

    def put(self, source: BinaryIO, *, max_bytes: int | None = None) -> StoredBlob:
        """Stream `source` in, hashing as it goes; an empty or oversized stream is refused and leaves nothing behind."""
        fd, tmp_name = tempfile.mkstemp(dir=self.root / "tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                sha, size = _copy_hashing(source, out, max_bytes)
            final = self.root / _relative(sha)
            created = self._publish(sha, tmp)
            if not final.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
            return StoredBlob(sha, size, final, created=created)
        finally:
            tmp.unlink(missing_ok=True)

    def discard(self, blob: StoredBlob) -> None:
        """Undo a `put` whose surrounding transaction failed, unless the blob was already there before it."""
        if blob.created:
            self._unpublish(blob.sha256)
            blob.path.unlink(missing_ok=True)

    # The folder is the store itself: nothing to publish elsewhere.
    def _publish(self, sha256: str, tmp: Path) -> bool:
        return not (self.root / _relative(sha256)).exists()

    def _unpublish(self, sha256: str) -> None:
        pass


class S3ArtifactStore(ArtifactStore):
    """Blobs in an S3-compatible bucket under a prefix, read through a local cache folder (`root`)."""

    def __init__(self, url: str, cache: Path, *, endpoint_url: str | None = None, client: Any = None) -> None:
        super().__init__(cache)
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise InvalidInput(f"artifact location {url!r} names no bucket (s3://bucket/prefix)", field="artifacts")
        self.url = url.rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:
            import boto3  # only for a bucket; loaded at start, not on the event loop

            client = boto3.client("s3", endpoint_url=endpoint_url)
        self.client = client

    @property
    def location(self) -> str:
        return self.url

    def _key(self, sha256: str) -> str:
        return f"{self.prefix}/{_relative(sha256)}" if self.prefix else _relative(sha256)

    def _exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(sha256))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def _publish(self, sha256: str, tmp: Path) -> bool:
        if self._exists(sha256):
            return False
        self.client.upload_file(str(tmp), self.bucket, self._key(sha256))
        return True

    def _unpublish(self, sha256: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(sha256))

    def path_for(self, sha256: str) -> Path:
        local = super().path_for(sha256)
        if local.exists():
            return local
        from botocore.exceptions import ClientError

        fd, tmp_name = tempfile.mkstemp(dir=self.root / "tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            try:
                self.client.download_file(self.bucket, self._key(sha256), str(tmp))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    raise NotFound(f"artifact {sha256} is not in {self.url}", field="sha") from None
                raise
            with open(tmp, "rb") as check:  # a torn or tampered download never reaches a loader
                digest = hashlib.sha256()
                while chunk := check.read(_CHUNK):
                    digest.update(chunk)
            if digest.hexdigest() != sha256:
                raise InvalidInput(f"artifact {sha256} in {self.url} does not match its digest", field="sha")
            local.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, local)
            return local
        finally:
            tmp.unlink(missing_ok=True)


def open_artifact_store(location: str, cache: Path, *, s3_endpoint_url: str | None = None) -> ArtifactStore:
    """The store named by MODELPORT_ARTIFACTS: `s3://bucket/prefix`, or a folder."""
    if location.startswith("s3://"):
        return S3ArtifactStore(location, cache, endpoint_url=s3_endpoint_url)
    if "://" in location:
        raise InvalidInput(f"artifact location {location!r} is neither a folder nor s3://bucket/prefix",
                           field="artifacts")
    return ArtifactStore(Path(location).expanduser().resolve())


def _copy_hashing(source: BinaryIO, out: BinaryIO, max_bytes: int | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(_CHUNK):
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise PayloadTooLarge(f"upload is larger than the limit of {max_bytes} bytes", field="file")
        digest.update(chunk)
        out.write(chunk)
    if size == 0:
        raise InvalidInput("the uploaded file is empty", field="file")
    return digest.hexdigest(), size
