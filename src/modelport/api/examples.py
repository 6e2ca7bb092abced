"""Example archives for the upload operations of the OpenAPI document. A JSON document carries text, not bytes, so
each archive is built to be 7-bit clean: stored (uncompressed) ZIP entries whose CRCs happen to have no byte above
0x7f (a trailing comment in each file is varied until they do), or a plain tar of text files. Deterministic, so the
document is the same on every build."""

from __future__ import annotations

import io
import random
import tarfile
import zipfile
import zlib

_DATE = (2024, 1, 1, 0, 0, 0)


def _clean(data: bytes) -> bool:
    return all(b < 0x80 for b in data)


def _ascii_crc(name: str, text: str) -> str:
    """`text` padded (a comment line in code, trailing spaces elsewhere) so that its CRC-32 has only 7-bit bytes."""
    for n in range(100_000):
        candidate = f"{text}# {n}\n" if name.endswith((".py", ".txt")) else text + " " * n
        if _clean(zlib.crc32(candidate.encode()).to_bytes(4, "little")):
            return candidate
    raise AssertionError("no 7-bit CRC found")  # pragma: no cover - 1 in 16 candidates fits


def ascii_zip(files: dict[str, str]) -> str:
    """A valid ZIP of `files` (name -> text, padded as `_ascii_crc` says) as a 7-bit string: files are lengthened,
    by a seeded search, until the sizes and offsets in the headers are 7-bit too. Keep names short (the central
    directory's size must stay under 128 bytes)."""
    chooser = random.Random(0)
    pads = [0] * len(files)
    for _ in range(100_000):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for pad, (name, text) in zip(pads, files.items()):
                info = zipfile.ZipInfo(name, date_time=_DATE)
                info.create_system = 0
                info.external_attr = 0o444 << 16  # r--r--r--: 0o644 would put 0xa4 in the header
                archive.writestr(info, _ascii_crc(name, text + ("\n" if name.endswith(".py") else " ") * pad))
        data = buffer.getvalue()
        if _clean(data):
            return data.decode("ascii")
        pads = [chooser.randrange(320) for _ in files]
    raise AssertionError("no 7-bit ZIP found")  # pragma: no cover


def ascii_tar(files: dict[str, str]) -> str:
    """A plain (uncompressed) tar of text files as a 7-bit string."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_704_067_200, 0o644
            archive.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    end = 512 * sum(1 + -(-m.size // 512) for m in tarfile.open(fileobj=io.BytesIO(data)).getmembers())
    data = data[:end + 1024]  # the two zero blocks that end an archive, without the padding to a 10 KiB record
    assert _clean(data)
    return data.decode("ascii")


ORCHESTRATION_ZIP = ascii_zip({"main.py": "print('hello from an orchestration')\n"})
CRAFTAI_CODE_TAR = ascii_tar({"src/double.py": "def double(x=1):\n    return {'y': x * 2}\n"})
DATAIKU_BUNDLE_ZIP = ascii_zip({
    "modelport-bundle.json": '{"format": 1, "version": "sum-1", "endpoints": [{"id": "sum", "type": "python-function", '
                             '"module": "f.py", "function": "add"}]}',
    "f.py": "def add(a, b):\n    return {'sum': a + b}\n"})
