"""Assemble the faces over one Platform. `create_app` is what `modelport serve` runs."""

from __future__ import annotations

import copy
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from modelport import __version__
from modelport.api import errors, fastpath, native, openapi, v2
from modelport.api import dashboard
from modelport.api.craftai import routes as craftai
from modelport.api.dataiku import admin as dataiku_admin
from modelport.api.dataiku import prediction as dataiku_prediction  # noqa: F401 - registers the prediction routes
from modelport.api.sagemaker import control as sagemaker_control
from modelport.api.sagemaker import runtime as sagemaker_runtime  # noqa: F401 - registers the invocations route
from modelport.api.fastpath import FastPath
from modelport.api.bodies import component_schemas
from modelport.api.responses import JSON
from modelport.api import gate
from modelport.api.security import require_principal
from modelport.api.wallaroo import deployments as wallaroo_deployments
from modelport.api.wallaroo import jobs as wallaroo_jobs
from modelport.api.wallaroo import routes as wallaroo
from modelport.services.platform import Platform
from modelport.settings import Settings

log = logging.getLogger("modelport")


def openapi_document(app: FastAPI) -> dict:
    """FastAPI's document, plus the request schemas parsed by hand and the raw fast-path inference routes, with each
    face's errors, security and examples (`api/openapi.py`). A copy: FastAPI caches its own."""
    document = copy.deepcopy(app.openapi())
    document.setdefault("components", {}).setdefault("schemas", {}).update(component_schemas)
    document["servers"] = [{"url": "http://127.0.0.1:8080"}]
    return openapi.finish(document, app, fastpath.openapi_paths())


def create_app(settings: Settings, *, on_admin_token=None) -> FastPath:  # type: ignore[no-untyped-def]
    """The ASGI app: inference routes on the raw fast path, everything else on FastAPI (`.fastapi_app`).
    `on_admin_token(token)` is called once when the first start creates the admin token."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        platform = Platform(settings)
        token = platform.start()
        if token is not None and on_admin_token is not None:
            on_admin_token(token)
        app.state.platform = platform
        await platform.start_serving()
        # Everything allocated so far lives as long as the process: keep it out of every future collection, so
        # full collections stay short and do not show up as inference tail latency.
        gc.collect()
        gc.freeze()
        fast.deadlines.start()
        try:
            yield
        finally:
            await fast.deadlines.stop()
            await platform.stop_serving()
            platform.stop()

    app = FastAPI(
        title="modelport",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,  # served below, behind authentication
        docs_url=None,
        redoc_url=None,
        default_response_class=JSON,
    )
    app.state.settings = settings
    errors.install(app)
    wallaroo.install(app)
    app.include_router(wallaroo_deployments.router)
    app.include_router(wallaroo_jobs.router)
    v2.install(app)
    app.include_router(sagemaker_control.router)
    app.include_router(dataiku_admin.router)
    app.include_router(dataiku_admin.public)
    app.include_router(craftai.router)
    app.include_router(craftai.public)
    app.include_router(native.router)
    app.include_router(native.own)
    app.include_router(dashboard.entrance)
    app.include_router(dashboard.router)
    gate.set_default(gate.Policy(require_principal))  # any route no face registered: a bearer token, JSON-sized
    app.add_middleware(gate.BodyGate, max_upload_bytes=settings.max_upload_bytes,
                       max_json_bytes=settings.max_json_bytes)

    @app.get("/healthz", operation_id="health_check", include_in_schema=True, tags=["health"],
             openapi_extra=openapi.answers({"type": "object", "required": ["status", "version"], "properties": {
                 "status": {"const": "ok"}, "version": {"type": "string"}}}))
    async def healthz() -> JSON:
        """Liveness: answers without authentication."""
        return JSON({"status": "ok", "version": __version__})

    @app.get("/metrics", operation_id="prometheus_metrics", tags=["observability"],
             dependencies=[Depends(require_principal)],
             openapi_extra=openapi.answers({"type": "string"}, media_type="text/plain"))
    async def metrics(request: Request) -> Response:
        """Prometheus text format; scrape with `authorization: {credentials: <token>}`."""
        registry = request.app.state.platform.plane.metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/openapi.json", operation_id="openapi_document", include_in_schema=False,
             dependencies=[Depends(require_principal)])
    async def openapi_json(request: Request) -> JSON:
        return JSON(openapi_document(request.app))

    fast = FastPath(app, app, max_body_bytes=settings.max_upload_bytes, request_timeout_s=settings.request_timeout_s)
    return fast
