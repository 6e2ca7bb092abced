"""Secrets at rest: sealed with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) under one key that lives
outside the database: `MODELPORT_SECRET_KEY`, or `<home>/secret.key` (created on first start, mode 0600). Every
server on one database must share the key. A stored value is `mpenc1:<fernet token>`; anything else is a plain value
written before sealing existed, which `seal_plain_rows` seals at start."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select

from modelport.domain.errors import ModelportError

log = logging.getLogger(__name__)

PREFIX = "mpenc1:"
SEALED_JSON = "__sealed__"  # a JSON column holding a sealed value: {"__sealed__": "mpenc1:..."}
KEY_FILE = "secret.key"


def _fernet_key(value: str) -> bytes:
    """A Fernet key as given, or one derived (SHA-256) from a passphrase of at least 32 characters."""
    try:
        if len(base64.urlsafe_b64decode(value.encode())) == 32:
            return value.encode()
    except (ValueError, TypeError):
        pass
    if len(value) < 32:
        raise ModelportError("MODELPORT_SECRET_KEY must be a Fernet key or a passphrase of at least 32 characters")
    return base64.urlsafe_b64encode(hashlib.sha256(value.encode()).digest())


def key_from_file(path: Path) -> str:
    """The key in `path`, created (0600, exclusively: concurrent first starts agree on one key) when missing."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(Fernet.generate_key().decode() + "\n")
    return path.read_text().strip()


class SecretBox:
    def __init__(self, key: str) -> None:
        self._fernet = Fernet(_fernet_key(key))

    @classmethod
    def for_home(cls, home: Path, preset: str | None) -> SecretBox:
        return cls(preset if preset else key_from_file(home / KEY_FILE))

    @staticmethod
    def is_sealed(stored: Any) -> bool:
        return isinstance(stored, str) and stored.startswith(PREFIX)

    def seal(self, plain: str) -> str:
        return PREFIX + self._fernet.encrypt(plain.encode()).decode()

    def open(self, stored: str) -> str:
        if not self.is_sealed(stored):
            return stored  # written before sealing; sealed at the next start
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise ModelportError("a stored secret cannot be decrypted: is MODELPORT_SECRET_KEY (or <home>/secret.key) "
                                 "the key it was sealed with?") from None

    def seal_json(self, value: Any) -> dict[str, str]:
        return {SEALED_JSON: self.seal(json.dumps(value))}

    def open_json(self, stored: Any) -> Any:
        if isinstance(stored, dict) and set(stored) == {SEALED_JSON}:
            return json.loads(self.open(stored[SEALED_JSON]))
        return stored


def seal_plain_rows(db: Any, box: SecretBox) -> int:
    """Seal every secret still stored in plain text (rows written before sealing existed); returns how many."""
    from modelport.store.tables import AwsAccessKey, CraftEnvironmentVariable, Task

    count = 0
    with db.session() as s:
        for key in s.scalars(select(AwsAccessKey)):
            if not box.is_sealed(key.secret):
                key.secret, count = box.seal(key.secret), count + 1
        for variable in s.scalars(select(CraftEnvironmentVariable)):
            if not box.is_sealed(variable.value):
                variable.value, count = box.seal(variable.value), count + 1
        for task in s.scalars(select(Task)):
            arguments = task.arguments
            if not (isinstance(arguments, dict) and set(arguments) == {SEALED_JSON}):
                task.arguments, count = box.seal_json(arguments or {}), count + 1
    if count:
        log.info("sealed %d secrets stored in plain text by an earlier version", count)
    return count
