"""`modelport.Client`: the Python SDK over modelport's HTTP APIs."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from modelport.sdk import task
from modelport.sdk.errors import ModelportAPIError, TimeoutError, error_for
from modelport.sdk.objects import Deployment, ModelVersion, Pipeline, Token, Workspace

_PROGRESS_THRESHOLD = 8 * 1024 * 1024


class Client:
    """A connection to one modelport server.

    `Client()` with no arguments reads MODELPORT_URL and MODELPORT_TOKEN, which a task run sets for its own token.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 60.0,
                 workspace: int | str | None = None) -> None:
        url = url or os.environ.get("MODELPORT_URL") or "http://127.0.0.1:8080"
        token = token or os.environ.get("MODELPORT_TOKEN")
        if not token:
            raise ValueError("no token: pass Client(url, token) or set MODELPORT_TOKEN")
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
        self._workspace_id: int | None = None
        if workspace is not None:
            self.set_workspace(workspace)

    # -- plumbing --------------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """POST a Wallaroo-face call and return the decoded reply, raising a typed error on 4xx/5xx."""
        if "files" in kwargs:
            response = self._http.post(f"/v1/api/{path}", **kwargs)
        else:
            response = self._http.post(f"/v1/api/{path}", json=body or {}, **kwargs)
        return self._decode(response)

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                data = response.json()
            except ValueError:
                data = {}
            if "error" in data and isinstance(data["error"], dict):
                data = data["error"]
            message = data.get("msg") or data.get("message") or response.text or response.reason_phrase
            raise error_for(response.status_code, message, data.get("field"))
        return response.json() if response.content else None

    def _resolve_workspace(self, workspace: int | str | Workspace | None) -> int:
        if workspace is None:
            if self._workspace_id is None:
                raise ValueError("no workspace: pass workspace= or call set_workspace() first")
            return self._workspace_id
        if isinstance(workspace, Workspace):
            return workspace.id
        if isinstance(workspace, int):
            return workspace
        for w in self.list_workspaces():
            if w.name == workspace:
                return w.id
        raise error_for(404, f"workspace {workspace!r} not found", "workspace")

    # -- jobs ------------------------------------------------------------------------------------------------------
    @staticmethod
    def in_task() -> bool:
        return task.in_task()

    @staticmethod
    def task_args() -> dict[str, Any]:
        return task.task_args()

    # -- workspaces ------------------------------------------------------------------------------------------------
    def create_workspace(self, name: str) -> Workspace:
        reply = self._call("workspaces/create", {"workspace_name": name})
        return Workspace(reply["workspace_id"], name)

    def list_workspaces(self) -> list[Workspace]:
        reply = self._call("workspaces/list", {})
        return [Workspace(w["id"], w["name"], w["models"], w["pipelines"]) for w in reply["workspaces"]]

    def set_workspace(self, workspace: int | str | Workspace) -> int:
        """Make `workspace` the default for calls that take one; it is created when given by a new name."""
        if isinstance(workspace, str):
            try:
                self._workspace_id = self._resolve_workspace(workspace)
            except ModelportAPIError:
                self._workspace_id = self.create_workspace(workspace).id
        else:
            self._workspace_id = self._resolve_workspace(workspace)
        return self._workspace_id

    # -- models ----------------------------------------------------------------------------------------------------
    def upload_model(self, name: str, path: str | Path, *, framework: str = "onnx",
                     workspace: int | str | Workspace | None = None, requirements: Sequence[str] = (),
                     python_version: str | None = None, progress: bool | None = None) -> ModelVersion:
        """Upload a model file as a new version of `name`. Large files show a progress bar (progress=False hides it)."""
        path = Path(path)
        metadata = {"name": name, "visibility": "private", "workspace_id": self._resolve_workspace(workspace),
                    "conversion": {"framework": framework, "python_version": python_version,
                                   "requirements": list(requirements)}}
        size = path.stat().st_size
        show = progress if progress is not None else size >= _PROGRESS_THRESHOLD
        with open(path, "rb") as raw:
            stream: BinaryIO = raw
            bar = None
            if show:
                bar = _ProgressBar(f"uploading {path.name}", size)
                stream = _ProgressReader(raw, bar.advance)  # type: ignore[assignment]
            try:
                reply = self._call("models/upload_and_convert", files={
                    "metadata": (None, json.dumps(metadata), "application/json"),
                    "file": (path.name, stream, "application/octet-stream"),
                }, timeout=None)
            finally:
                if bar is not None:
                    bar.close()
        model_pk = reply["insert_models"]["returning"][0]["models"][0]["models_pk_id"]
        return self.model_versions(name, model_pk)[-1]

    def model_versions(self, name: str, model_id: int | None = None) -> list[ModelVersion]:
        reply = self._call("models/list_versions", {"model_id": name, "models_pk_id": model_id})
        return [ModelVersion.from_json(v) for v in reply]

    def model_version(self, version_id: int) -> ModelVersion:
        reply = self._call("models/get_version_by_id", {"model_version_id": version_id})
        return ModelVersion.from_json(reply["model_version"]["model_version"])

    def wait_for_model(self, version: ModelVersion | int, *, timeout: float = 120.0) -> ModelVersion:
        """Poll until the version is `ready` or `error` (it is loaded for real in a separate process)."""
        version_id = version.id if isinstance(version, ModelVersion) else version
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            current = self.model_version(version_id)
            if current.status in ("ready", "error"):
                return current
            if time.monotonic() > deadline:
                raise TimeoutError(408, f"model version {version_id} still {current.status} after {timeout} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def list_models(self, workspace: int | str | Workspace | None = None) -> list[list[ModelVersion]]:
        reply = self._call("models/list", {"workspace_id": self._resolve_workspace(workspace)})
        return [[ModelVersion.from_json(v) for v in m["models"]] for m in reply["models"]]

    # -- pipelines -------------------------------------------------------------------------------------------------
    def build_pipeline(self, name: str, steps: Sequence[ModelVersion | Sequence[ModelVersion]] = (), *,
                       workspace: int | str | Workspace | None = None) -> Pipeline:
        """Create pipeline `name` (or add a version to it) with one ModelInference step per entry of `steps`."""
        definition = {"steps": [
            {"ModelInference": {"models": [m.as_step_model() for m in
                                           ([step] if isinstance(step, ModelVersion) else step)]}}
            for step in steps
        ]}
        workspace_id = self._resolve_workspace(workspace)
        self._call("pipelines/create", {"pipeline_id": name, "workspace_id": workspace_id, "definition": definition})
        return self.pipeline(name, workspace=workspace_id)

    def pipeline(self, name: str, *, workspace: int | str | Workspace | None = None) -> Pipeline:
        workspace_id = self._resolve_workspace(workspace) if workspace is not None or self._workspace_id else None
        reply = self._call("pipelines/get_pipeline_by_name", {"pipeline_name": name, "workspace_id": workspace_id})
        return Pipeline.from_json(reply["pipeline"])

    def list_pipelines(self, workspace: int | str | Workspace | None = None) -> list[Pipeline]:
        reply = self._call("pipelines/list", {"workspace_id": self._resolve_workspace(workspace)})
        return [Pipeline.from_json(p) for p in reply["pipelines"]]

    def copy_pipeline(self, source: Pipeline, name: str) -> Pipeline:
        self._call("pipelines/copy", {"name": name, "workspace_id": source.workspace_id, "source_pipeline": source.id})
        return self.pipeline(name, workspace=source.workspace_id)

    # -- deployments -----------------------------------------------------------------------------------------------
    def deploy(self, pipeline: Pipeline, *, replicas: int = 1, replica_min: int | None = None,
               replica_max: int | None = None, scale_down_idle_s: float | None = None,
               max_batch_size: int | None = None, max_delay_ms: int | None = None, wait: bool = True,
               timeout: float = 300.0) -> Deployment:
        """Deploy the pipeline's newest version (a redeploy switches versions with zero downtime); by default wait
        until it is Running."""
        engine: dict[str, Any] = {"replicas": replicas}
        if replica_min is not None or replica_max is not None:
            engine["autoscale"] = {"replica_min": replica_min if replica_min is not None else 0,
                                   "replica_max": replica_max if replica_max is not None else max(replicas, 1)}
            if scale_down_idle_s is not None:
                engine["autoscale"]["scale_down_idle_s"] = scale_down_idle_s
        if max_batch_size is not None or max_delay_ms is not None:
            engine["batch"] = {k: v for k, v in (("max_batch_size", max_batch_size), ("max_delay_ms", max_delay_ms))
                               if v is not None}
        reply = self._call("pipelines/deploy", {
            "deploy_id": pipeline.name, "pipeline_id": pipeline.id, "pipeline_version_pk_id": pipeline.latest.id,
            "engine_config": {"engine": engine}})
        deployment = Deployment(reply["id"], pipeline.name, pipeline)
        url = self._call("admin/get_pipeline_external_url",
                         {"workspace_id": pipeline.workspace_id, "pipeline_name": pipeline.name})["url"]
        deployment = Deployment(deployment.id, deployment.deploy_id, pipeline, url)
        if wait:
            self.wait_until_running(deployment, timeout=timeout)
        return deployment

    def status(self, deployment: Deployment | str) -> dict[str, Any]:
        name = deployment.name if isinstance(deployment, Deployment) else deployment
        return self._call("status/get_deployment", {"name": name})

    def wait_until_running(self, deployment: Deployment | str, *, timeout: float = 300.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(deployment)
            if status["status"] == "Running":
                return status
            if status["status"] == "Error":
                reasons = [*(status.get("details") or []), *(e["reason"] for e in status["engines"] if e["reason"])]
                raise error_for(409, f"deployment failed: {'; '.join(reasons) or 'see the server log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(408, f"deployment still {status['status']} after {timeout} s")
            time.sleep(0.2)

    def infer(self, deployment: Deployment, data: Any, *, timeout: float = 120.0) -> Any:
        """A pandas DataFrame in, a DataFrame out (columns time, in.*, out.*, ...); a pyarrow Table in, a Table out."""
        import pandas as pd

        url = deployment.url or f"{self.url}/v1/api/pipelines/infer/{deployment.name}/{deployment.deploy_id}"
        try:
            import pyarrow as pa
        except ImportError:  # pragma: no cover - pyarrow is a dependency
            pa = None
        if pa is not None and isinstance(data, pa.Table):
            sink = io.BytesIO()
            with pa.ipc.new_file(sink, data.schema) as writer:
                writer.write_table(data)
            arrow = "application/vnd.apache.arrow.file"
            response = self._http.post(url, content=sink.getvalue(), timeout=timeout,
                                       headers={"Content-Type": arrow, "Accept": arrow})
            self._decode_error(response)
            return pa.ipc.open_file(pa.BufferReader(response.content)).read_all()
        if not isinstance(data, pd.DataFrame):
            raise TypeError("infer takes a pandas DataFrame or a pyarrow Table")
        response = self._http.post(url, content=data.to_json(orient="records"), timeout=timeout,
                                   headers={"Content-Type": "application/json; format=pandas-records"})
        records = self._decode(response)
        return pd.json_normalize(records, max_level=1)

    def _decode_error(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            self._decode(response)

    def undeploy(self, deployment: Deployment) -> None:
        self._call("pipelines/undeploy", {"pipeline_id": deployment.pipeline.id, "deployment_id": deployment.id})

    def logs(self, pipeline: Pipeline, *, limit: int = 100) -> list[dict[str, Any]]:
        """Recent inference records of the pipeline, newest first."""
        return self._call("pipelines/get_logs", {"pipeline_name": pipeline.name,
                                                 "workspace_id": pipeline.workspace_id, "limit": limit})["logs"]

    # -- tokens (admin) --------------------------------------------------------------------------------------------
    def create_token(self, name: str, *, admin: bool = False) -> Token:
        data = self._decode(self._http.post("/modelport/v1/tokens",
                                            json={"name": name, "kind": "admin" if admin else "user"}))
        return Token(data["id"], data["name"], data["kind"], data["revoked"], data["token"])

    def list_tokens(self) -> list[Token]:
        data = self._decode(self._http.get("/modelport/v1/tokens"))
        return [Token(t["id"], t["name"], t["kind"], t["revoked"]) for t in data["tokens"]]

    def revoke_token(self, token_id: str) -> Token:
        data = self._decode(self._http.delete(f"/modelport/v1/tokens/{token_id}"))
        return Token(data["id"], data["name"], data["kind"], data["revoked"])


class _ProgressBar:
    def __init__(self, description: str, total: int) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self._progress = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), transient=True)
        self._task = self._progress.add_task(description, total=total)
        self._progress.start()

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def close(self) -> None:
        self._progress.stop()


class _ProgressReader(io.RawIOBase):
    """A read-only file wrapper that reports how many bytes were read (httpx streams multipart parts by read())."""

    def __init__(self, raw: BinaryIO, on_read: Any) -> None:
        self._raw = raw
        self._on_read = on_read

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._on_read(len(data))
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def fileno(self) -> int:
        return self._raw.fileno()
