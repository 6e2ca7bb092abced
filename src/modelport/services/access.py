"""Who may see and change what: Wallaroo's model, for every face, in one place.

- Admin tokens (and unbound AWS keys an admin made) see and change everything.
- Every other credential belongs to a user; a user sees and changes what lives in the workspaces they are a member
  of (role `owner` or `collaborator`; owners also manage the members). Resources in other workspaces do not exist
  for them (404), and naming another workspace is refused (403).
- Faces without workspaces map onto them here: a SageMaker Model, EndpointConfig and Endpoint, a Craft AI pipeline,
  deployment, execution and environment variable live in the workspace of the credential that created it: the
  workspace the AWS key pair or token is bound to, else the user's only workspace. Rows without a workspace (made by
  an admin) are the admins' alone. The Dataiku API node's admin API takes admin keys only (as Dataiku's does), and
  its prediction keys are limited to their services.

The faces say who is calling once, where they authenticate (`act_as`); the services read it from a context
variable, which follows a request into the thread pool. Every HTTP request starts as NOBODY (`enter_request`), so a
route that forgets to authenticate fails closed. Nothing is set for background work (the scheduler, reconciliation
loops, the CLI), which acts as the system. The inference hot path asks `Access.may`, answered from
memory: each user's workspaces are looked up once and cached for `cache_s` (dropped at once on a membership change
made through this server).
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelport.domain.entities import Principal
from modelport.domain.errors import Forbidden, NotFound
from modelport.store.tables import WorkspaceMember

ROLES = ("owner", "collaborator")
_acting: ContextVar[Principal | None] = ContextVar("modelport_principal", default=None)
# each user's workspaces, as the inference hot path checks them: (workspaces, valid until)
_spaces: dict[str, tuple[frozenset[int], float]] = {}


def memberships_changed(user_id: str | None = None) -> None:
    """Drop cached workspaces (a user's, or everyone's): a membership changed through this server."""
    if user_id is None:
        _spaces.clear()
    else:
        _spaces.pop(user_id, None)


NOBODY = Principal(token_id="", name="nobody", kind="nobody")  # neither an admin nor a member of anything


def enter_request() -> None:
    """Every HTTP request starts as NOBODY until its face authenticates it (`act_as`): a route that forgot to say
    who is calling sees and changes nothing, where a missing principal would otherwise act as the system."""
    _acting.set(NOBODY)


def act_as(principal: Principal | None) -> None:
    """Called by a face once it knows who is calling: every service call of this request checks against it."""
    _acting.set(principal)


def acting() -> Principal | None:
    return _acting.get()


def unrestricted(principal: Principal | None) -> bool:
    return principal is None or principal.is_admin


def principal_workspaces(s: Session, principal: Principal) -> set[int]:
    """A user's workspaces; a credential of no user (a task run's token) has only the one it is bound to."""
    if principal.user_id is None:
        return {principal.workspace_id} if principal.workspace_id is not None else set()
    return set(s.scalars(select(WorkspaceMember.workspace_id).where(WorkspaceMember.user_id == principal.user_id)))


def visible_workspaces(s: Session) -> set[int] | None:
    """The workspaces the caller may see; None for all of them."""
    principal = acting()
    return None if unrestricted(principal) else principal_workspaces(s, principal)  # type: ignore[arg-type]


def require_workspace(s: Session, workspace_id: int, *, owner: bool = False) -> None:
    """The caller is a member of the workspace (its owner when `owner`), or an admin; else 403."""
    principal = acting()
    if unrestricted(principal):
        return
    assert principal is not None
    if principal.user_id is None:
        role = "collaborator" if principal.workspace_id == workspace_id else None
    else:
        role = s.scalar(select(WorkspaceMember.role).where(WorkspaceMember.workspace_id == workspace_id,
                                                           WorkspaceMember.user_id == principal.user_id))
    if role is None or (owner and role != "owner"):
        raise Forbidden(f"you are not {'the owner' if owner else 'a member'} of workspace {workspace_id}",
                        field="workspace_id")


def require_visible(s: Session, workspace_id: int | None, what: str, field: str | None = None) -> None:
    """A resource in a workspace the caller cannot see does not exist for them (404, as an unknown one)."""
    principal = acting()
    if unrestricted(principal):
        return
    if workspace_id is None or workspace_id not in principal_workspaces(s, principal):  # type: ignore[arg-type]
        raise NotFound(f"{what} not found", field=field)


def is_visible(s: Session, workspace_id: int | None) -> bool:
    principal = acting()
    return unrestricted(principal) or (workspace_id is not None
                                       and workspace_id in principal_workspaces(s, principal))  # type: ignore[arg-type]


def home_workspace(s: Session) -> int | None:
    """Where a face without workspaces puts what the caller creates: the credential's bound workspace, else the
    user's only workspace; None (no workspace, admins only) for an unbound admin credential."""
    principal = acting()
    if principal is None:
        return None
    if principal.workspace_id is not None:
        return principal.workspace_id
    if principal.is_admin:
        return None
    spaces = principal_workspaces(s, principal)
    if len(spaces) != 1:
        raise Forbidden("this credential is bound to no workspace and its user is a member of "
                        f"{len(spaces)} workspaces: create a credential bound to one (workspace_id)")
    return next(iter(spaces))


def _cache_key(principal: Principal) -> str:
    return principal.user_id or "token:" + principal.token_id


class Access:
    """The cached side, for the inference hot path: may this principal use a deployment of that workspace?"""

    def __init__(self, db: Any, *, cache_s: float = 5.0) -> None:
        self.db = db
        self.cache_s = cache_s

    def cached_may(self, principal: Principal, workspace_id: int | None) -> bool | None:
        """True or False from memory, or None when the user's workspaces must be looked up (`may`)."""
        if principal.is_admin:
            return True
        hit = _spaces.get(_cache_key(principal))
        if hit is None or hit[1] < time.monotonic():
            return None
        return workspace_id in hit[0]

    def may(self, principal: Principal, workspace_id: int | None) -> bool:
        """Blocking (a database read on a cache miss): call it from the thread pool."""
        answer = self.cached_may(principal, workspace_id)
        if answer is not None:
            return answer
        with self.db.session() as s:
            spaces = frozenset(principal_workspaces(s, principal))
        if len(_spaces) > 10_000:
            _spaces.clear()
        _spaces[_cache_key(principal)] = (spaces, time.monotonic() + self.cache_s)
        return workspace_id in spaces

    def require(self, workspace_id: int | None, what: str, field: str | None = None, *, named: bool = False) -> None:
        """For in-memory resources (live deployments): the acting caller may see them, else 404 (403 when the caller
        `named` the workspace). Blocking on a cache miss: call it from the thread pool."""
        principal = acting()
        if not unrestricted(principal) and not self.may(principal, workspace_id):  # type: ignore[arg-type]
            if named:
                raise Forbidden(f"you are not a member of workspace {workspace_id}", field=field)
            raise NotFound(f"{what} not found", field=field)

    async def check_inference(self, principal: Principal | None, workspace_id: int | None, what: str) -> None:
        """The inference hot path's check: answered from memory; one database read per user per cache period."""
        if principal is None or principal.is_admin:
            return
        allowed = self.cached_may(principal, workspace_id)
        if allowed is None:
            from starlette.concurrency import run_in_threadpool

            allowed = await run_in_threadpool(self.may, principal, workspace_id)
        if not allowed:
            raise NotFound(f"{what} not found")

    def invalidate(self, user_id: str | None = None) -> None:
        memberships_changed(user_id)
