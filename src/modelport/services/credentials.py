"""Every credential, one model: list (kind, name, owner, created, last used; never the secret) and revoke, whatever
the kind and wherever it is stored.

| kind | what | stored in | id |
|---|---|---|---|
| admin, user | bearer tokens | api_tokens (sha256) | uuid |
| dataiku | Dataiku prediction API keys (service keys) | api_tokens (sha256) | uuid |
| aws | SigV4 access key pairs (SageMaker face) | aws_access_keys (sealed secret) | the access key id (AKMP...) |
| craftai-endpoint | Craft AI endpoint tokens | craft_deployments (sha256) | craftai-endpoint:<deployment> |
| run | a task run's token (lives as long as the run) | api_tokens (sha256) | uuid |

Revocation takes effect at once on the server that revokes (its caches are dropped) and within the auth cache
period (5 s) on the others. Revoking a token ends its console sessions.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from modelport.domain.entities import CredentialInfo
from modelport.domain.errors import InvalidInput, NotFound
from modelport.services.access import acting, unrestricted
from modelport.services.auth import AuthService
from modelport.store.database import Database
from modelport.store.tables import ApiToken, AwsAccessKey, CraftDeployment, User, utcnow

KINDS = ("admin", "user", "dataiku", "aws", "craftai-endpoint", "run")
CRAFT_PREFIX = "craftai-endpoint:"
_TOKEN_KINDS = {"admin": "admin", "user": "user", "service": "dataiku", "run": "run"}


class CredentialService:
    def __init__(self, db: Database, auth: AuthService, forget_key: Callable[[str], None] = lambda key: None) -> None:
        self.db = db
        self.auth = auth
        self.forget_key = forget_key

    def list(self, kind: str | None = None) -> list[CredentialInfo]:
        """Admins see every credential; a user sees their own."""
        if kind is not None and kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="kind")
        principal = acting()
        mine = None if unrestricted(principal) else principal.user_id  # type: ignore[union-attr]
        items: list[CredentialInfo] = []
        with self.db.session() as s:
            emails = dict(s.execute(select(User.id, User.email)).all())
            tokens = select(ApiToken).order_by(ApiToken.created_at)
            keys = select(AwsAccessKey).order_by(AwsAccessKey.created_at)
            if mine is not None:
                tokens = tokens.where(ApiToken.user_id == mine)
                keys = keys.where(AwsAccessKey.user_id == mine)
            for t in s.scalars(tokens):
                items.append(CredentialInfo(t.id, _TOKEN_KINDS.get(t.kind, t.kind), t.name, emails.get(t.user_id),
                                            t.workspace_id, t.created_at, t.last_used_at, t.revoked_at))
            for k in s.scalars(keys):
                items.append(CredentialInfo(k.access_key_id, "aws", k.name, emails.get(k.user_id), k.workspace_id,
                                            k.created_at, k.last_used_at, k.revoked_at))
            if mine is None:  # endpoint tokens belong to their deployment; admins manage them here
                for d in s.scalars(select(CraftDeployment).where(CraftDeployment.endpoint_token_hash.is_not(None))
                                   .order_by(CraftDeployment.created_at)):
                    items.append(CredentialInfo(CRAFT_PREFIX + d.name, "craftai-endpoint", d.name, d.created_by or None,
                                                d.workspace_id, d.endpoint_token_created_at or d.created_at,
                                                d.endpoint_token_used_at, None))
        return [c for c in items if kind is None or c.kind == kind]

    def revoke(self, credential_id: str) -> CredentialInfo:
        """Revoke one credential (idempotent); NotFound if there is none by that id, or it is not the caller's."""
        found = [c for c in self.list() if c.id == credential_id]
        if not found:
            raise NotFound(f"credential {credential_id!r} not found", field="id")
        info = found[0]
        if info.kind == "aws":
            with self.db.session() as s:
                row = s.get(AwsAccessKey, credential_id)
                if row is not None and row.revoked_at is None:
                    row.revoked_at = utcnow()
            self.forget_key(credential_id)
        elif info.kind == "craftai-endpoint":
            with self.db.session() as s:
                row = s.get(CraftDeployment, credential_id[len(CRAFT_PREFIX):])
                if row is not None:
                    row.endpoint_token_hash = None  # no token matches: the endpoint is closed until a new one
        else:
            self.auth.revoke(credential_id)
        return [c for c in self.list() if c.id == credential_id][0] if info.kind != "craftai-endpoint" else info
