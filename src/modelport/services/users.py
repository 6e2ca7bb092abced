"""Users and workspace members (Wallaroo's model: users by email, members with role owner or collaborator).

Admins create and remove users (CLI `modelport user ...`, `POST /modelport/v1/users`); a workspace's owners (and
admins) add and remove its members. Removing a user revokes every credential of theirs, which ends their console
sessions, and drops their memberships.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelport.domain.entities import UserInfo
from modelport.domain.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from modelport.services.access import ROLES, Access
from modelport.services.auth import AuthService
from modelport.services.registry import get_workspace_row
from modelport.store.database import Database
from modelport.store.tables import AwsAccessKey, User, WorkspaceMember, utcnow

WALLAROO_ROLES = {"OWNER": "owner", "COLLABORATOR": "collaborator"}


def _info(row: User) -> UserInfo:
    return UserInfo(row.id, row.email, row.created_at)


def _check_email(email: object) -> str:
    if not isinstance(email, str) or not email.strip() or len(email) > 255 or any(c.isspace() for c in email):
        raise InvalidInput("email must be 1 to 255 characters without spaces", field="email")
    return email.strip()


def find_user(s: Session, who: str) -> User:
    """A user by id or email."""
    row = s.get(User, who) or s.scalar(select(User).where(User.email == who))
    if row is None:
        raise NotFound(f"user {who!r} not found", field="email")
    return row


class UserService:
    def __init__(self, db: Database, auth: AuthService, access: Access,
                 forget_key: Callable[[str], None] = lambda key: None) -> None:
        self.db = db
        self.auth = auth
        self.access = access
        self.forget_key = forget_key  # drops a revoked AWS key from the SigV4 cache

    # -- users (admins) ---------------------------------------------------------------------------------------------
    def create(self, email: object) -> UserInfo:
        email = _check_email(email)
        row = User(id=str(uuid.uuid4()), email=email, created_at=utcnow())
        try:
            with self.db.session() as s:
                if s.scalar(select(User.id).where(User.email == email)) is not None:
                    raise AlreadyExists(f"user {email!r} already exists", field="email")
                s.add(row)
        except IntegrityError:
            raise AlreadyExists(f"user {email!r} already exists", field="email") from None
        return _info(row)

    def ensure(self, email: str) -> UserInfo:
        """The user with this email, created if missing (a user token created without naming its user)."""
        with self.db.session() as s:
            row = s.scalar(select(User).where(User.email == email))
            if row is not None:
                return _info(row)
        return self.create(email)

    def get(self, who: str) -> UserInfo:
        with self.db.session() as s:
            return _info(find_user(s, who))

    def list(self) -> list[UserInfo]:
        with self.db.session() as s:
            return [_info(u) for u in s.scalars(select(User).order_by(User.created_at))]

    def remove(self, who: str) -> UserInfo:
        """Revoke the user's credentials (ending their sessions at once), drop their memberships, then the user."""
        with self.db.session() as s:
            user = find_user(s, who)
            info = _info(user)
            keys = list(s.scalars(select(AwsAccessKey.access_key_id).where(AwsAccessKey.user_id == user.id,
                                                                            AwsAccessKey.revoked_at.is_(None))))
            s.execute(update(AwsAccessKey).where(AwsAccessKey.user_id == user.id, AwsAccessKey.revoked_at.is_(None))
                      .values(revoked_at=utcnow()))
        self.auth.revoke_user_tokens(info.id)
        with self.db.session() as s:
            s.execute(delete(WorkspaceMember).where(WorkspaceMember.user_id == info.id))
            s.execute(delete(User).where(User.id == info.id))
        self.access.invalidate(info.id)
        for key in keys:
            self.forget_key(key)
        return info

    # -- workspace members (owners and admins) ------------------------------------------------------------------------
    def add_member(self, workspace_id: object, email: object, role: str = "collaborator") -> None:
        if role not in ROLES:
            raise InvalidInput(f"user_type must be one of {', '.join(r.upper() for r in ROLES)}", field="user_type")
        with self.db.session() as s:
            get_workspace_row(s, workspace_id, owner=True)
            user = find_user(s, _check_email(email))
            member = s.get(WorkspaceMember, (workspace_id, user.id))
            if member is None:
                s.add(WorkspaceMember(workspace_id=workspace_id, user_id=user.id, role=role, created_at=utcnow()))
            else:
                member.role = role
        self.access.invalidate(user.id)

    def remove_member(self, workspace_id: object, who: object) -> int:
        with self.db.session() as s:
            get_workspace_row(s, workspace_id, owner=True)
            user = find_user(s, _check_email(who))
            member = s.get(WorkspaceMember, (workspace_id, user.id))
            if member is None:
                return 0
            owners = s.scalars(select(WorkspaceMember.user_id).where(WorkspaceMember.workspace_id == workspace_id,
                                                                     WorkspaceMember.role == "owner")).all()
            if member.role == "owner" and len(owners) == 1:
                raise Conflict(f"{user.email} is the last owner of workspace {workspace_id}: add another owner first",
                               field="email")
            s.delete(member)
        self.access.invalidate(user.id)
        return 1

    def members(self, workspace_id: object) -> list[tuple[UserInfo, str]]:
        with self.db.session() as s:
            get_workspace_row(s, workspace_id)
            rows = s.execute(select(User, WorkspaceMember.role).join(WorkspaceMember, WorkspaceMember.user_id == User.id)
                             .where(WorkspaceMember.workspace_id == workspace_id).order_by(WorkspaceMember.created_at))
            return [(_info(u), role) for u, role in rows]


def add_owner(s: Session, workspace_id: int, user_id: str | None) -> None:
    """The user who creates a workspace owns it (Wallaroo's rule)."""
    if user_id is not None:
        s.add(WorkspaceMember(workspace_id=workspace_id, user_id=user_id, role="owner", created_at=utcnow()))

