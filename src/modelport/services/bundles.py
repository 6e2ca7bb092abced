"""Generation bundles on disk: build one from a folder, read and check one before anything is imported.

The format is described in `domain/bundles.py`. Checking is thorough on purpose: the archive is inspected like any
untrusted upload (no traversal, links or bombs), the manifest is validated, every file it names must be in the
archive, every model is loaded in a separate process, and every function module must define its function.
"""

from __future__ import annotations

import ast
import io
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from modelport.backends.local import check_model
from modelport.domain.bundles import MANIFEST, BundleEndpoint, BundleManifest, parse_manifest
from modelport.domain.errors import InvalidInput
from modelport.jobs.packages import ArchiveLimits, extract_zip, inspect_zip


@dataclass(frozen=True)
class CheckedEndpoint:
    endpoint: BundleEndpoint
    signature: dict | None  # what the loaded model reported (inputs, outputs, classes)


def read_manifest(source: Path | BinaryIO, limits: ArchiveLimits = ArchiveLimits()) -> BundleManifest:
    """Validate the archive and its manifest (no model is loaded): the cheap checks, done first."""
    listing = inspect_zip(source, limits, field="file")
    if MANIFEST not in listing.files:
        raise InvalidInput(f"the bundle has no {MANIFEST} at its root", field="file")
    with zipfile.ZipFile(source) as archive:
        raw = archive.read(MANIFEST)
    if not isinstance(source, Path):
        source.seek(0)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{MANIFEST} is not valid JSON: {exc}", field="manifest") from None
    manifest = parse_manifest(data)
    present = set(listing.files)
    for endpoint in manifest.endpoints:
        for name in endpoint.files():
            if name not in present:
                raise InvalidInput(f"endpoint {endpoint.id!r}: {name!r} is not in the bundle", field="manifest")
    return manifest


def check_extracted(manifest: BundleManifest, root: Path, *, timeout_s: float) -> list[CheckedEndpoint]:
    """Load every model of an extracted bundle in its own process; refuse the bundle on the first failure."""
    checked = []
    for endpoint in manifest.endpoints:
        path = root / endpoint.file
        if endpoint.type == "python-function":
            _check_function(endpoint, path)
            checked.append(CheckedEndpoint(endpoint, None))
            continue
        result = check_model(endpoint.framework, path, timeout_s=timeout_s)
        if not result.ok:
            raise InvalidInput(f"endpoint {endpoint.id!r}: {result.reason}", field="file")
        classes = (result.signature or {}).get("classes")
        if endpoint.task == "classification" and endpoint.classes is None and not classes \
                and endpoint.framework != "onnx":
            raise InvalidInput(f"endpoint {endpoint.id!r}: the model reports no class labels; list them under "
                               "'classes' or declare task 'regression'", field="manifest")
        checked.append(CheckedEndpoint(endpoint, result.signature))
    return checked


def _check_function(endpoint: BundleEndpoint, path: Path) -> None:
    """Parsed, not imported: its requirements may not be installed here; the replica imports it for real."""
    try:
        tree = ast.parse(path.read_bytes(), filename=endpoint.file)
    except (SyntaxError, ValueError) as exc:
        raise InvalidInput(f"endpoint {endpoint.id!r}: {endpoint.file} does not parse: {exc}", field="file") from None
    names = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    names |= {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    if endpoint.function not in names:
        raise InvalidInput(f"endpoint {endpoint.id!r}: {endpoint.file} defines no function {endpoint.function!r}",
                           field="file")


def check_bundle(path: Path, *, timeout_s: float = 120.0) -> tuple[BundleManifest, list[CheckedEndpoint]]:
    """Everything an import checks, for `modelport bundle check`."""
    manifest = read_manifest(path)
    with tempfile.TemporaryDirectory(prefix="modelport-bundle-") as folder:
        extract_zip(path, Path(folder))
        return manifest, check_extracted(manifest, Path(folder), timeout_s=timeout_s)


def build_bundle(folder: Path, output: Path) -> BundleManifest:
    """ZIP `folder` (which holds the manifest and the files it names) into `output`, entries in a stable order."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise InvalidInput(f"{folder} has no {MANIFEST}", field="folder")
    try:
        data = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise InvalidInput(f"{MANIFEST} is not valid JSON: {exc}", field="manifest") from None
    manifest = parse_manifest(data)
    for endpoint in manifest.endpoints:
        for name in endpoint.files():
            if not (folder / name).is_file():
                raise InvalidInput(f"endpoint {endpoint.id!r}: {name} is missing from {folder}", field="manifest")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()):
            relative = file.relative_to(folder).as_posix()
            if "__pycache__" in relative.split("/"):
                continue
            info = zipfile.ZipInfo(relative, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, file.read_bytes())
    output.write_bytes(buffer.getvalue())
    return manifest
