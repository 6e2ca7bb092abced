"""Console (dashboard) sessions, revocable server-side: the cookie holds a random secret, the `sessions` table its
sha256, the token it was opened with and when it expires. Logout deletes the row; revoking the token (and so
removing its user) deletes every row of that token (services/auth.py), so the cookie stops working at once."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select

from modelport.domain.entities import Principal
from modelport.store.database import Database
from modelport.store.tables import ConsoleSession, utcnow


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


class SessionService:
    def __init__(self, db: Database, *, ttl_s: float) -> None:
        self.db = db
        self.ttl_s = ttl_s

    def open(self, principal: Principal) -> str:
        """A new session for a verified principal; returns the cookie value (shown only to the browser)."""
        cookie = secrets.token_urlsafe(32)
        now = utcnow()
        with self.db.session() as s:
            s.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))  # sweep expired ones
            s.add(ConsoleSession(id=_digest(cookie), token_id=principal.token_id, created_at=now,
                                 expires_at=now + timedelta(seconds=self.ttl_s)))
        return cookie

    def token_id(self, cookie: str | None) -> str | None:
        """The token behind a live session, or None (unknown, ended or expired)."""
        if not cookie or len(cookie) > 128:
            return None
        with self.db.session() as s:
            row = s.scalar(select(ConsoleSession).where(ConsoleSession.id == _digest(cookie)))
            if row is None:
                return None
            if row.expires_at < utcnow():
                s.delete(row)
                return None
            return row.token_id

    def close(self, cookie: str | None) -> None:
        if cookie:
            with self.db.session() as s:
                s.execute(delete(ConsoleSession).where(ConsoleSession.id == _digest(cookie)))
