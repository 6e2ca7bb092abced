"""Content-addressed artifact store: blobs live at artifacts/sha256/<2 hex>/<64 hex>, written once, atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from modelport.domain.errors import InvalidInput, PayloadTooLarge

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    path: Path
    created: bool  # False when an identical blob was already stored


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "sha256").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise InvalidInput(f"not a sha256 digest: {sha256!r}", field="sha")
        return self.root / "sha256" / sha256[:2] / sha256

    def put(self, source: BinaryIO, *, max_bytes: int | None = None) -> StoredBlob:
        """Stream `source` in, hashing as it goes; an empty or oversized stream is refused and leaves nothing behind."""
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.root / "tmp")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(_CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise PayloadTooLarge(f"upload is larger than the limit of {max_bytes} bytes", field="file")
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise InvalidInput("the uploaded file is empty", field="file")
            sha = digest.hexdigest()
            final = self.path_for(sha)
            if final.exists():
                return StoredBlob(sha, size, final, created=False)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
            return StoredBlob(sha, size, final, created=True)
        finally:
            tmp.unlink(missing_ok=True)

    def discard(self, blob: StoredBlob) -> None:
        """Undo a `put` whose surrounding transaction failed, unless the blob was already there before it."""
        if blob.created:
            blob.path.unlink(missing_ok=True)
