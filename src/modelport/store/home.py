"""The home folder and the SQLite file are the owner's alone: the database holds hashes and sealed secrets, the
home the secret key, the admin token and the artifacts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url


def prepare_home(home: Path) -> Path:
    """Create the home 0700, or tighten it to 0700 if an earlier version left it readable by others."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(home.stat().st_mode) & 0o077:
        home.chmod(0o700)
    return home


def private_sqlite_file(url: str) -> None:
    """Create a SQLite database file 0600 before SQLite does (it would use the umask, often 0644), and tighten an
    existing one with its WAL and shared-memory files."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return
    path = Path(parsed.database)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if candidate.exists() and stat.S_IMODE(candidate.stat().st_mode) & 0o077:
            candidate.chmod(0o600)
