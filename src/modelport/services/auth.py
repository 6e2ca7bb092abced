"""API tokens: created, listed, revoked; kept only as sha256 hashes (tokens are 256-bit random, so a plain hash is
enough and lets us look them up by index)."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
import uuid
from pathlib import Path

import jwt

from sqlalchemy import delete, select

from modelport.domain.entities import Principal, TokenInfo
from modelport.domain.errors import InvalidInput, NotFound, Unauthenticated
from modelport.domain.names import check_display_name
from modelport.store.database import Database
from modelport.store.tables import ApiToken, ConsoleSession, utcnow

log = logging.getLogger(__name__)

TOKEN_KINDS = ("admin", "user", "service", "run")  # run: a task run's own token, bound to the task's workspace
ACCESS_TOKEN_S = 3600


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def signing_key(key_file: Path) -> str:
    """A random secret kept in the home folder (made on first use, readable by the owner only)."""
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def new_token() -> str:
    return "mp_" + secrets.token_urlsafe(32)


def _info(row: ApiToken) -> TokenInfo:
    return TokenInfo(row.id, row.name, row.kind, row.created_at, row.revoked_at, tuple(row.services or ()))


def _principal(row: ApiToken) -> Principal:
    return Principal(row.id, row.name, row.kind, tuple(row.services or ()), row.user_id, row.workspace_id)


def _touch(row: ApiToken) -> None:
    """Record use, at most once a minute (the lookup that calls this runs once per cache period, not per request)."""
    now = utcnow()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        row.last_used_at = now


class AuthService:
    """Verified tokens are remembered for `cache_s` seconds, so the inference path does not query the database per
    request; a revocation made through this process takes effect at once, one made elsewhere within `cache_s`."""

    def __init__(self, db: Database, *, cache_s: float = 5.0) -> None:
        self.db = db
        self.cache_s = cache_s
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._hot: dict[str, tuple[Principal, float]] = {}

    def bootstrap_admin(self, preset: str | None) -> str | None:
        """Create the first admin token if there is none; return its plaintext (only this once), else None."""
        with self.db.session() as s:
            if s.scalar(select(ApiToken.id).where(ApiToken.kind == "admin").limit(1)) is not None:
                if preset and s.scalar(select(ApiToken.id).where(ApiToken.token_hash == hash_token(preset))) is None:
                    log.warning("MODELPORT_ADMIN_TOKEN is ignored: an admin token already exists in this database")
                return None
            token = preset or new_token()
            if len(token) < 16:
                raise InvalidInput("MODELPORT_ADMIN_TOKEN must be at least 16 characters long", field="admin_token")
            s.add(ApiToken(id=str(uuid.uuid4()), name="admin", token_hash=hash_token(token), kind="admin"))
            return token

    def create(self, name: str, kind: str = "user", *, services: tuple[str, ...] = (), user_id: str | None = None,
               workspace_id: int | None = None) -> tuple[TokenInfo, str]:
        check_display_name(name, field="name", what="token")
        if kind not in TOKEN_KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(TOKEN_KINDS)}", field="kind")
        if kind == "user" and user_id is None:
            raise InvalidInput("a user token belongs to a user: name one", field="user")
        token = new_token()
        row = ApiToken(id=str(uuid.uuid4()), name=name, token_hash=hash_token(token), kind=kind, created_at=utcnow(),
                       services=list(services) if kind == "service" else None, user_id=user_id,
                       workspace_id=workspace_id)
        with self.db.session() as s:
            s.add(row)
        return _info(row), token

    def list(self, kind: str | None = None) -> list[TokenInfo]:
        with self.db.session() as s:
            query = select(ApiToken).order_by(ApiToken.created_at)
            if kind is not None:
                query = query.where(ApiToken.kind == kind, ApiToken.revoked_at.is_(None))
            return [_info(r) for r in s.scalars(query)]

    def get(self, token_id: str) -> TokenInfo:
        with self.db.session() as s:
            row = s.get(ApiToken, token_id)
            if row is None:
                raise NotFound(f"key {token_id!r} not found", field="id")
            return _info(row)

    def find(self, token: str) -> TokenInfo | None:
        """The record of a token given by its value (the Dataiku client deletes keys by value)."""
        with self.db.session() as s:
            row = s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
            return _info(row) if row is not None else None

    def revoke(self, token_id: str) -> TokenInfo:
        with self.db.session() as s:
            row = s.get(ApiToken, token_id)
            if row is None:
                raise NotFound(f"token {token_id!r} not found", field="id")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            s.execute(delete(ConsoleSession).where(ConsoleSession.token_id == token_id))  # signed-in consoles too
            self.forget(token_id)
            return _info(row)

    def revoke_user_tokens(self, user_id: str) -> list[str]:
        """Revoke every token of a user (removed), ending their console sessions; returns the token ids."""
        with self.db.session() as s:
            ids = list(s.scalars(select(ApiToken.id).where(ApiToken.user_id == user_id)))
        for token_id in ids:
            self.revoke(token_id)
        return ids

    def forget(self, token_id: str) -> None:
        """Drop a token from the caches: refused from the next request on (this server)."""
        self._cache = {k: v for k, v in self._cache.items() if v[0].token_id != token_id}
        self._hot = {k: v for k, v in self._hot.items() if v[0].token_id != token_id}

    def cached(self, token: str | None) -> Principal | None:
        """The principal for a recently verified token, without I/O (safe to call on the event loop)."""
        if not token:
            return None
        hit = self._hot.get(token)
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def principal_by_id(self, token_id: str) -> Principal:
        """The principal of a token known by id (a signed access token names it); revoked tokens are refused."""
        key = "id:" + token_id
        hit = self._cache.get(key)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        with self.db.session() as s:
            row = s.get(ApiToken, token_id)
            if row is None or row.revoked_at is not None:
                self._cache.pop(key, None)
                raise Unauthenticated("the token behind this access token was revoked")
            principal = _principal(row)
            _touch(row)
        self._cache[key] = (principal, time.monotonic() + self.cache_s)
        return principal

    def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthenticated("missing credentials: send Authorization: Bearer <token>")
        digest = hash_token(token)
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        with self.db.session() as s:
            row = s.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
            if row is None or row.revoked_at is not None:
                self._cache.pop(digest, None)
                self._hot.pop(token, None)
                raise Unauthenticated("unknown or revoked token")
            principal = _principal(row)
            _touch(row)
        if len(self._cache) > 10_000:
            self._cache.clear()
            self._hot.clear()
        entry = (principal, time.monotonic() + self.cache_s)
        self._cache[digest] = entry
        self._hot[token] = entry  # keyed by the token itself: a cache hit costs no hashing
        return principal


class AccessTokens:
    """Signs and checks access tokens with a key kept in the home folder (created on first use, mode 0600)."""

    def __init__(self, key_file: Path) -> None:
        self.key = signing_key(key_file)

    def issue(self, principal: Principal) -> str:
        now = int(time.time())
        return jwt.encode({"sub": principal.token_id, "name": principal.name, "iat": now, "exp": now + ACCESS_TOKEN_S},
                          self.key, algorithm="HS256")

    def subject(self, token: str) -> str:
        try:
            claims = jwt.decode(token, self.key, algorithms=["HS256"], options={"require": ["exp", "iat", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the access token has expired: refresh it") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("invalid access token") from None
        return str(claims["sub"])
