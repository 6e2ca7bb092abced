"""Untrusted ZIP archives (orchestrations, python models): validate before anything is stored, extract safely."""

from __future__ import annotations

import stat
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from modelport.domain.errors import InvalidInput


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 10_000
    max_uncompressed_bytes: int = 4 * 1024**3
    max_ratio: float = 200.0  # uncompressed / compressed, per entry and overall: zip bombs go far beyond


@dataclass(frozen=True)
class ArchiveListing:
    files: tuple[str, ...]
    uncompressed_bytes: int


def inspect_zip(path: Path | BinaryIO, limits: ArchiveLimits = ArchiveLimits(), *, field: str = "file") -> ArchiveListing:
    """Refuse anything that could escape the extraction folder or exhaust the disk; return the file names.
    `path` may be an open binary file (an upload not stored yet); it is rewound afterwards."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"not a readable ZIP archive: {exc}", field=field) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_entries:
            raise InvalidInput(f"archive has {len(infos)} entries; at most {limits.max_entries} are allowed", field=field)
        total = 0
        compressed = 0
        files = []
        for info in infos:
            name = info.filename
            _check_member_name(name, field)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise InvalidInput(f"archive entry {name!r} is a symbolic link; links are not allowed", field=field)
            if info.flag_bits & 0x1:
                raise InvalidInput(f"archive entry {name!r} is encrypted", field=field)
            total += info.file_size
            compressed += info.compress_size
            if total > limits.max_uncompressed_bytes:
                raise InvalidInput(
                    f"archive unpacks to more than {limits.max_uncompressed_bytes} bytes", field=field
                )
            if info.file_size > 1024 * 1024 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                raise InvalidInput(f"archive entry {name!r} has a suspicious compression ratio (zip bomb?)", field=field)
            if not info.is_dir():
                files.append(name)
        if total > 1024 * 1024 and total > limits.max_ratio * max(compressed, 1):
            raise InvalidInput("archive has a suspicious overall compression ratio (zip bomb?)", field=field)
        try:
            bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
            raise InvalidInput(f"archive is corrupt: {exc}", field=field) from None
        if bad is not None:
            raise InvalidInput(f"archive entry {bad!r} is corrupt (CRC mismatch)", field=field)
    if not isinstance(path, Path):
        path.seek(0)
    return ArchiveListing(tuple(files), total)


def _check_member_name(name: str, field: str) -> None:
    if not name or "\x00" in name or "\\" in name:
        raise InvalidInput(f"archive entry {name!r} has an invalid name", field=field)
    posix = PurePosixPath(name)
    if posix.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise InvalidInput(f"archive entry {name!r} has an absolute path", field=field)
    if ".." in posix.parts:
        raise InvalidInput(f"archive entry {name!r} escapes the archive (path traversal)", field=field)


def extract_zip(path: Path, destination: Path, limits: ArchiveLimits = ArchiveLimits()) -> ArchiveListing:
    """Validate, then extract into `destination` (created), never following or creating links."""
    listing = inspect_zip(path, limits)
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            target = (root / info.filename).resolve()
            if not target.is_relative_to(root):
                raise InvalidInput(f"archive entry {info.filename!r} escapes the archive", field="file")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1024 * 1024):
                    out.write(chunk)
    return listing


def extract_tar(archive: Path, destination: Path, max_bytes: int, *, what: str = "archive") -> None:
    """A (gzipped) tar, safely: regular files and folders only, inside the destination, bounded in size."""
    destination.mkdir(parents=True)
    total = 0
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if not (member.isfile() or member.isdir()):
                    raise InvalidInput(f"{what} entry {member.name!r} is a link or device; only files and folders "
                                       "are allowed", field="file")
                total += member.size
                if total > max_bytes:
                    raise InvalidInput(f"{what} unpacks to more than {max_bytes} bytes", field="file")
            tar.extractall(destination, filter="data")
    except tarfile.FilterError as exc:
        raise InvalidInput(f"{what} is unsafe: {exc}", field="file") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidInput(f"{what} is unreadable: {exc}", field="file") from None
