"""The web dashboard: server-rendered pages at `/ui`, signed in with a token, with a small script for live parts."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, RedirectResponse, Response

from modelport.api import gate
from modelport.api.responses import JSON
from modelport.domain.entities import Principal
from modelport.domain.errors import Forbidden, ModelportError, NotFound, Unauthenticated
from modelport.services.access import act_as
from modelport.services.auth import signing_key
from modelport.services.dashboard import DashboardQueries

HERE = Path(__file__).parent
COOKIE = "modelport_session"
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)
# The entrance is in the API description: it shares `/` with SageMaker's control plane (which takes POST).
entrance = APIRouter(tags=["dashboard"])


class Csrf:
    """The CSRF token is an HMAC of the session cookie, so a form posted from another site (which cannot read the
    cookie) is refused. Sessions themselves live in the database (services/sessions.py): revocable at once."""

    def __init__(self, key_file: Path) -> None:
        self.key = signing_key(key_file).encode()

    def csrf(self, cookie: str) -> str:
        return hmac.new(self.key, ("csrf:" + cookie).encode(), hashlib.sha256).hexdigest()[:40]


def _sessions(request: Request) -> Csrf:
    platform = request.app.state.platform
    if not hasattr(platform, "_dashboard_csrf"):
        platform._dashboard_csrf = Csrf(platform.settings.resolved_home / "dashboard-session.key")
    return platform._dashboard_csrf


async def _principal(request: Request) -> Principal | None:
    """The signed-in principal of a live session (ended by logout, revocation or user removal), or None."""
    if "dashboard_principal" in request.scope.get("state", {}):
        return request.state.dashboard_principal
    request.state.dashboard_principal = principal = await _session_principal(request)
    return principal


async def _session_principal(request: Request) -> Principal | None:
    platform = request.app.state.platform
    token_id = await run_in_threadpool(platform.sessions.token_id, request.cookies.get(COOKIE))
    if token_id is None:
        return None
    try:
        principal = await run_in_threadpool(platform.auth.principal_by_id, token_id)
    except Unauthenticated:
        return None
    if principal.is_service_key:
        return None
    act_as(principal)  # what the pages show and what their actions change is checked against it
    return principal


def _queries(request: Request) -> DashboardQueries:
    return DashboardQueries(request.app.state.platform)


def _to_login() -> Response:
    return RedirectResponse("/ui/login", status_code=303)


async def _page(request: Request, template: str, **context: Any) -> Response:
    principal = await _principal(request)
    if principal is None:
        return RedirectResponse("/ui/login", status_code=303)
    cookie = request.cookies[COOKIE]
    return templates.TemplateResponse(request, template, {"principal": principal,
                                                          "csrf": _sessions(request).csrf(cookie), **context})


async def _require_session(request: Request) -> Principal:
    principal = await _principal(request)
    if principal is None:
        raise Unauthenticated("sign in first")
    return principal


gate.register("/ui/", gate.Policy(_require_session))  # forms are read only for a signed-in session
gate.register("/ui/login", gate.Policy(None), exact=True)


async def _require_action(request: Request) -> Principal:
    """A signed-in session and the form's CSRF token."""
    principal = await _require_session(request)
    form = await request.form()
    sent = form.get("csrf")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, _sessions(request).csrf(request.cookies[COOKIE])):
        raise Forbidden("missing or invalid CSRF token: reload the page and try again")
    return principal


# -- sign in ------------------------------------------------------------------------------------------------------------

@entrance.get("/", operation_id="dashboard_home", response_class=RedirectResponse, status_code=303,
          openapi_extra={"responses": {"303": {"description": "To the dashboard (`/ui`)", "headers": {
              "Location": {"schema": {"type": "string"}}}}}})
async def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=303)


@router.get("/ui/login")
async def login_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "login.html", {"error": None})


@router.post("/ui/login")
async def login(request: Request) -> Response:
    form = await request.form()
    token = form.get("token")
    auth = request.app.state.platform.auth
    try:
        principal = await run_in_threadpool(auth.authenticate, token if isinstance(token, str) else None)
        if principal.is_service_key:
            raise Unauthenticated("a service key cannot sign in")
    except ModelportError as exc:
        # the form again, with the reason (200, as sign-in forms answer a failed attempt)
        return templates.TemplateResponse(request, "login.html", {"error": exc.message})
    response = RedirectResponse("/ui", status_code=303)
    cookie = await run_in_threadpool(request.app.state.platform.sessions.open, principal)
    response.set_cookie(COOKIE, cookie, max_age=int(request.app.state.platform.sessions.ttl_s), httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/")
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    await _require_action(request)
    await run_in_threadpool(request.app.state.platform.sessions.close, request.cookies.get(COOKIE))
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- pages --------------------------------------------------------------------------------------------------------------

@router.get("/ui")
async def home(request: Request) -> Response:
    return await deployments(request)


@router.get("/ui/workspaces")
async def workspaces(request: Request) -> Response:
    if await _principal(request) is None:  # first: what the page loads is checked against who is signed in
        return _to_login()
    return await _page(request, "workspaces.html", workspaces=await run_in_threadpool(_queries(request).workspaces))


@router.get("/ui/models")
async def models(request: Request) -> Response:
    if await _principal(request) is None:  # first: what the page loads is checked against who is signed in
        return _to_login()
    return await _page(request, "models.html", models=await run_in_threadpool(_queries(request).models))


@router.get("/ui/pipelines")
async def pipelines(request: Request) -> Response:
    if await _principal(request) is None:  # first: what the page loads is checked against who is signed in
        return _to_login()
    return await _page(request, "pipelines.html", pipelines=await run_in_threadpool(_queries(request).pipelines))


@router.get("/ui/deployments")
async def deployments(request: Request) -> Response:
    if await _principal(request) is None:  # first: what the page loads is checked against who is signed in
        return _to_login()
    return await _page(request, "deployments.html", deployments=await run_in_threadpool(_queries(request).deployments))


@router.get("/ui/deployments/{key}")
async def deployment(key: str, request: Request) -> Response:
    if await _principal(request) is None:  # first: what the page loads is checked against who is signed in
        return _to_login()
    queries = _queries(request)
    try:
        detail = await run_in_threadpool(queries.deployment, key)
    except NotFound:
        return await _page(request, "missing.html", what=f"deployment {key}")
    logs = await run_in_threadpool(queries.inference_logs, key)
    return await _page(request, "deployment.html", d=detail, logs=logs)


@router.get("/ui/deployments/{key}/live")
async def deployment_live(key: str, request: Request) -> Response:
    """The replicas and variants part of the page, re-fetched every few seconds."""
    await _require_session(request)
    detail = await run_in_threadpool(_queries(request).deployment, key)
    return templates.TemplateResponse(request, "_replicas.html", {"d": detail})


@router.get("/ui/deployments/{key}/metrics.json")
async def deployment_metrics(key: str, request: Request) -> JSON:
    await _require_session(request)
    return JSON(await run_in_threadpool(_queries(request).metrics, key))


@router.post("/ui/deployments/{key}/undeploy")
async def undeploy(key: str, request: Request) -> Response:
    await _require_action(request)
    await _queries(request).undeploy(key)
    return RedirectResponse(f"/ui/deployments/{key}", status_code=303)


@router.post("/ui/deployments/{key}/redeploy")
async def redeploy(key: str, request: Request) -> Response:
    await _require_action(request)
    await _queries(request).redeploy(key)
    await asyncio.sleep(0)  # let the apply start, so the page shows Starting rather than Stopped
    return RedirectResponse(f"/ui/deployments/{key}", status_code=303)


@router.get("/ui/jobs")
async def jobs(request: Request) -> Response:
    if await _principal(request) is None:  # first: what the page loads is checked against who is signed in
        return _to_login()
    queries = _queries(request)
    return await _page(request, "jobs.html", orchestrations=await run_in_threadpool(queries.orchestrations),
                       tasks=await run_in_threadpool(queries.tasks))


@router.get("/ui/tasks/{task_id}")
async def task(task_id: str, request: Request) -> Response:
    if await _principal(request) is None:  # first: what the page loads is checked against who is signed in
        return _to_login()
    try:
        detail = await run_in_threadpool(_queries(request).task, task_id)
    except NotFound:
        return await _page(request, "missing.html", what=f"task {task_id}")
    return await _page(request, "task.html", t=detail)


@router.post("/ui/tasks/{task_id}/kill")
async def kill(task_id: str, request: Request) -> Response:
    await _require_action(request)
    platform = request.app.state.platform
    await run_in_threadpool(platform.jobs.begin_kill, task_id)
    await platform.supervisor.kill_task(task_id)
    return RedirectResponse(f"/ui/tasks/{task_id}", status_code=303)


@router.get("/ui/runs/{run_id}")
async def run(run_id: str, request: Request) -> Response:
    if await _principal(request) is None:  # first: what the page loads is checked against who is signed in
        return _to_login()
    queries = _queries(request)
    try:
        detail = await run_in_threadpool(queries.run, run_id)
    except NotFound:
        return await _page(request, "missing.html", what=f"run {run_id}")
    return await _page(request, "run.html", run=detail, lines=await run_in_threadpool(queries.log_tail, run_id))


@router.get("/ui/runs/{run_id}/log")
async def run_log(run_id: str, request: Request) -> Response:
    await _require_session(request)
    lines = await run_in_threadpool(_queries(request).log_tail, run_id)
    return Response("\n".join(lines), media_type="text/plain")


@router.get("/ui/static/{name}")
async def static(name: str, request: Request) -> Response:
    await _require_session(request)
    path = HERE / "static" / name
    if name not in ("app.js", "app.css") or not path.is_file():
        raise NotFound(f"no asset {name}")
    return FileResponse(path, headers={"Cache-Control": "private, max-age=300"})
