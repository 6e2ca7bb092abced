"""File inputs (`--input name=@path`): sent as a file part in multipart bodies, as their content elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileInput:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def read(self) -> bytes:
        return self.path.read_bytes()

    def text(self) -> str:
        return self.read().decode("utf-8", errors="replace")

    def __str__(self) -> str:
        return f"@{self.path}"
