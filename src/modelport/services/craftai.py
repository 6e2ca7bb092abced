"""Craft AI-style pipelines, deployments and executions on the core's job machinery.

A pipeline's code is unpacked once and its requirements built into a cached environment (the same builder as
orchestrations). Executions run the function in a process of that environment: a fresh one each time (elastic) or
one kept warm per deployment (low_latency). Periodic deployments fire from this service's scheduler, one execution
per tick even with several servers on one database (a unique (deployment, tick) row).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from modelport.domain import craftai as rules
from modelport.domain.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from modelport.domain.jobs import describe_schedule, next_fire, parse_schedule
from modelport.jobs.environments import EnvironmentBuilder, normalise
from modelport.jobs.functions import FunctionFailed, FunctionProcess, FunctionSpec, run_once
from modelport.jobs.packages import extract_tar
from modelport.store.artifacts import ArtifactStore
from modelport.store.database import Database
from modelport.domain.entities import Principal
from modelport.services.access import home_workspace, is_visible, visible_workspaces
from modelport.store.secrets import SecretBox
from modelport.store.tables import (
    CraftDeployment, CraftEnvironmentVariable, CraftExecution, CraftPipeline, utcnow,
)

log = logging.getLogger(__name__)

FINISHED = ("Succeeded", "Failed")
TOKEN_VISIBLE_S = 600.0  # a new endpoint token is shown by get_deployment for this long, then only its hash is kept


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value else None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class CraftAiService:
    def __init__(self, db: Database, artifacts: ArtifactStore, environments: EnvironmentBuilder, root: Path, *,
                 max_upload_bytes: int, allow_second_schedules: bool, secrets: SecretBox,
                 default_timeout_s: float = 3600.0) -> None:
        self.db = db
        self.secrets = secrets  # environment variable values are sealed at rest
        self.artifacts = artifacts
        self.environments = environments
        self.root = root
        self.max_upload_bytes = max_upload_bytes
        self.allow_second_schedules = allow_second_schedules
        self.default_timeout_s = default_timeout_s
        self.warm: dict[str, FunctionProcess] = {}  # low-latency deployments' processes
        self._changed: dict[str, asyncio.Event] = {}  # long polls wait on these
        self._fresh_tokens: dict[str, tuple[str, float]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._last_tick: dict[str, datetime] = {}
        self._loop: asyncio.AbstractEventLoop

    # -- helpers ------------------------------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        """Start `coro` on the server's event loop; callable from the loop or from a worker thread."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._loop.call_soon_threadsafe(self._spawn, coro)
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _wake_scheduler(self) -> None:
        self._loop.call_soon_threadsafe(self._wake.set)

    def _notify(self, key: str) -> None:
        event = self._changed.pop(key, None)
        if event is not None:
            event.set()

    def watch(self, key: str) -> asyncio.Event:
        """An event set at the next change of `key`; take it *before* reading the state it guards."""
        return self._changed.setdefault(key, asyncio.Event())

    async def wait_for_change(self, key: str, timeout_s: float, event: asyncio.Event | None = None) -> None:
        event = event or self.watch(key)
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass

    def _pipeline(self, s: Any, name: str) -> CraftPipeline:
        row = s.get(CraftPipeline, name)
        if row is None or not is_visible(s, row.workspace_id):  # another project's (workspace's): not found
            raise NotFound(f"pipeline {name!r} not found", field="pipeline_name")
        return row

    def _deployment(self, s: Any, name: str) -> CraftDeployment:
        row = s.get(CraftDeployment, name)
        if row is None or not is_visible(s, row.workspace_id):
            raise NotFound(f"deployment {name!r} not found", field="deployment_name")
        return row

    def code_dir(self, sha: str) -> Path:
        return self.root / "pipelines" / sha

    def datastore_path(self, path: str) -> Path:
        return self.root / "datastore" / rules.check_datastore_path(path, "path")

    # -- pipelines ----------------------------------------------------------------------------------------------------
    def create_pipeline(self, fields: dict[str, Any], package: Any, creator: str) -> dict[str, Any]:
        name = rules.check_name(fields.get("pipeline_name"), "pipeline_name")
        function_path = fields.get("function_path")
        function_name = fields.get("function_name")
        if not isinstance(function_path, str) or not function_path.endswith(".py"):
            raise InvalidInput("function_path must be the path of a .py file in the code folder", field="function_path")
        rules.check_datastore_path(function_path, "function_path")  # relative, no '..'
        if not isinstance(function_name, str) or not function_name.isidentifier():
            raise InvalidInput("function_name must be a Python identifier", field="function_name")
        inputs = rules.parse_parameters(fields.get("inputs"), "inputs")
        outputs = rules.parse_parameters(fields.get("outputs"), "outputs", output=True)
        config = fields.get("container_config") or {}
        if not isinstance(config, dict):
            raise InvalidInput("container_config must be an object", field="container_config")
        if package is None:
            raise InvalidInput("the code folder is required as the file part 'step_file' (a tar.gz)", field="step_file")
        with self.db.session() as s:
            if s.get(CraftPipeline, name) is not None:
                raise AlreadyExists(f"pipeline {name!r} already exists", field="pipeline_name")
        blob = self.artifacts.put(package, max_bytes=self.max_upload_bytes)
        folder = self.code_dir(blob.sha256)
        if not folder.exists():
            staging = folder.with_name(folder.name + ".partial")
            shutil.rmtree(staging, ignore_errors=True)
            extract_tar(self.artifacts.path_for(blob.sha256), staging, self.max_upload_bytes * 4, what="step_file")
            staging.rename(folder)
        if not (folder / function_path).is_file():
            raise InvalidInput(f"{function_path} is not in the uploaded code folder", field="function_path")
        requirements: list[str] = []
        requirements_path = config.get("requirements_path")
        if requirements_path:
            rules.check_datastore_path(requirements_path, "container_config.requirements_path")
            if not (folder / requirements_path).is_file():
                raise InvalidInput(f"{requirements_path} is not in the uploaded code folder",
                                   field="container_config.requirements_path")
            requirements = normalise((folder / requirements_path).read_text())
        with self.db.session() as s:
            s.add(CraftPipeline(name=name, function_path=function_path, function_name=function_name,
                                description=fields.get("description"), inputs=[p.to_json() for p in inputs],
                                outputs=[p.to_json(output=True) for p in outputs], container_config=config,
                                package_sha=blob.sha256, requirements=requirements, status="creation_pending",
                                created_by=creator, created_at=utcnow(), workspace_id=home_workspace(s)))
        return {"pipeline_name": name}

    async def prepare_pipeline(self, name: str) -> None:
        """creation_pending -> ready once its environment is built and the function imports, else creation_failed."""
        status, reason = "ready", None
        try:
            with self.db.session() as s:
                row = self._pipeline(s, name)
                requirements, sha = list(row.requirements), row.package_sha
                function_path, function_name = row.function_path, row.function_name
            python = await run_in_threadpool(self.environments.python_for, requirements)
            spec = FunctionSpec(python, self.code_dir(sha), function_path, function_name,
                                self.root / "logs" / f"pipeline-{name}.log")
            probe = FunctionProcess(spec)
            await probe.start(300)
            await probe.stop()
        except Exception as exc:  # noqa: BLE001 - any failure is the creation's failure, with its reason
            status, reason = "creation_failed", str(exc)[-2000:]
        with self.db.session() as s:
            row = s.get(CraftPipeline, name)
            if row is not None:
                row.status, row.failure_reason = status, reason
        self._notify(f"pipeline:{name}")

    def get_pipeline(self, name: str) -> dict[str, Any]:
        with self.db.session() as s:
            row = self._pipeline(s, name)
        return {
            "parameters": {"pipeline_name": row.name, "function_path": row.function_path,
                           "function_name": row.function_name, "description": row.description,
                           "inputs": row.inputs, "outputs": row.outputs, "container_config": row.container_config},
            "creation_info": {"created_at": _iso(row.created_at), "created_by": row.created_by, "status": row.status,
                              "origin": "local", "commit_id": None, "pipeline_template": None,
                              "failure_reason": row.failure_reason},
        }

    def pipeline_status(self, name: str) -> str:
        with self.db.session() as s:
            return self._pipeline(s, name).status

    def list_pipelines(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            query = select(CraftPipeline).order_by(CraftPipeline.created_at)
            if (visible := visible_workspaces(s)) is not None:
                query = query.where(CraftPipeline.workspace_id.in_(visible))
            rows = list(s.scalars(query))
        return [{"pipeline_name": r.name, "created_at": _iso(r.created_at), "status": r.status} for r in rows]

    async def delete_pipeline(self, name: str, force: bool) -> dict[str, Any]:
        with self.db.session() as s:
            self._pipeline(s, name)
            deployments = list(s.scalars(select(CraftDeployment).where(CraftDeployment.pipeline_name == name)))
            if deployments and not force:
                raise Conflict(f"pipeline {name!r} has deployments ({', '.join(d.name for d in deployments)}); "
                               "delete them first or pass force_deployments_deletion=true")
        removed = [await self.delete_deployment(d.name) for d in deployments]
        with self.db.session() as s:
            s.delete(self._pipeline(s, name))
        return {"pipeline": {"name": name}, "deployments": removed}

    # -- deployments --------------------------------------------------------------------------------------------------
    def create_deployment(self, body: Any, rule: str, creator: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        name = rules.check_name(body.get("name"), "name")
        mode = body.get("mode", "elastic")
        if mode not in rules.MODES:
            raise InvalidInput(f"mode must be one of {', '.join(rules.MODES)}", field="mode")
        timeout = body.get("execution_timeout_s")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0):
            raise InvalidInput("execution_timeout_s must be a positive integer", field="execution_timeout_s")
        schedule = parse_schedule(body.get("schedule"), allow_seconds=self.allow_second_schedules) \
            if rule == "periodic" else None
        with self.db.session() as s:
            pipeline = self._pipeline(s, body.get("pipeline_name") if isinstance(body.get("pipeline_name"), str) else "")
            if pipeline.status != "ready":
                raise InvalidInput(f"pipeline {pipeline.name!r} is {pipeline.status}, not ready", field="pipeline_name")
            if s.get(CraftDeployment, name) is not None:
                raise AlreadyExists(f"deployment {name!r} already exists", field="name")
            inputs = rules.parse_parameters(pipeline.inputs, "inputs")
            outputs = rules.parse_parameters(pipeline.outputs, "outputs", output=True)
        inputs_mapping = rules.parse_inputs_mapping(body.get("inputs_mapping"), inputs, rule)
        outputs_mapping = rules.parse_outputs_mapping(body.get("outputs_mapping"), outputs, rule)
        row = CraftDeployment(name=name, pipeline_name=pipeline.name, execution_rule=rule, mode=mode,
                              description=body.get("description"), inputs_mapping=inputs_mapping,
                              outputs_mapping=outputs_mapping, execution_timeout_s=timeout, is_enabled=True,
                              created_by=creator, created_at=utcnow(), updated_at=utcnow(),
                              workspace_id=pipeline.workspace_id)
        token = None
        if rule == "periodic":
            row.schedule = schedule
        else:
            path = body.get("endpoint_url_path") or name
            row.endpoint_url_path = rules.check_name(path, "endpoint_url_path")
            token = body.get("endpoint_token") or secrets.token_urlsafe(32)
            if not isinstance(token, str) or len(token) < 16 or len(token) > 256:
                raise InvalidInput("endpoint_token must be 16 to 256 characters", field="endpoint_token")
            row.endpoint_token_hash = _hash(token)
            row.endpoint_token_created_at = utcnow()
        try:
            with self.db.session() as s:
                s.add(row)
        except IntegrityError:
            raise AlreadyExists(f"endpoint path {row.endpoint_url_path!r} is taken", field="endpoint_url_path") from None
        if token is not None:
            self._fresh_tokens[name] = (token, time.monotonic() + TOKEN_VISIBLE_S)
        self._wake_scheduler()
        return self.get_deployment(name)

    def deployment_status(self, row: CraftDeployment) -> str:
        if not row.is_enabled:
            return "disabled"
        if row.mode == "low_latency":
            process = self.warm.get(row.name)
            return "up" if process is not None and process.alive else "creation_pending"
        return "up"

    def get_deployment(self, name: str) -> dict[str, Any]:
        with self.db.session() as s:
            row = self._deployment(s, name)
            pipeline = s.get(CraftPipeline, row.pipeline_name)
        types = {p["name"]: p for p in (pipeline.inputs + pipeline.outputs if pipeline else [])}

        def described(mapping: dict[str, Any], key: str) -> dict[str, Any]:
            parameter = types.get(mapping[key], {})
            return {**mapping, "data_type": parameter.get("data_type"), "description": parameter.get("description")}

        body: dict[str, Any] = {
            "name": row.name, "mode": row.mode, "pipeline": {"name": row.pipeline_name},
            "execution_rule": row.execution_rule, "status": self.deployment_status(row), "is_enabled": row.is_enabled,
            "inputs_mapping": [described(m, "pipeline_input_name") for m in row.inputs_mapping],
            "outputs_mapping": [described(m, "pipeline_output_name") for m in row.outputs_mapping],
            "created_at": _iso(row.created_at), "created_by": row.created_by, "updated_at": _iso(row.updated_at),
            "updated_by": row.created_by, "description": row.description, "enable_parallel_executions": False,
            "max_parallel_executions_per_pod": 1, "execution_timeout_s": row.execution_timeout_s,
        }
        if row.execution_rule == "endpoint":
            body["endpoint_url_path"] = row.endpoint_url_path
            fresh = self._fresh_tokens.get(row.name)
            if fresh is not None and fresh[1] > time.monotonic():
                body["endpoint_token"] = fresh[0]
        else:
            body["schedule"] = row.schedule
            body["human_readable_schedule"] = describe_schedule(row.schedule or "")
        return body

    def list_deployments(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            query = select(CraftDeployment).order_by(CraftDeployment.created_at)
            if (visible := visible_workspaces(s)) is not None:
                query = query.where(CraftDeployment.workspace_id.in_(visible))
            rows = list(s.scalars(query))
        return [{"name": r.name, "pipeline_name": r.pipeline_name, "execution_rule": r.execution_rule,
                 "mode": r.mode, "is_enabled": r.is_enabled, "created_at": _iso(r.created_at)} for r in rows]

    def update_deployment(self, name: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        with self.db.session() as s:
            row = self._deployment(s, name)
            pipeline = self._pipeline(s, row.pipeline_name)
            if "is_enabled" in body:
                if not isinstance(body["is_enabled"], bool):
                    raise InvalidInput("is_enabled must be true or false", field="is_enabled")
                row.is_enabled = body["is_enabled"]
            if body.get("schedule") is not None:
                if row.execution_rule != "periodic":
                    raise InvalidInput("only a periodic deployment has a schedule", field="schedule")
                row.schedule = parse_schedule(body["schedule"], allow_seconds=self.allow_second_schedules)
            if body.get("inputs_mapping") is not None:
                row.inputs_mapping = rules.parse_inputs_mapping(
                    body["inputs_mapping"], rules.parse_parameters(pipeline.inputs, "inputs"), row.execution_rule)
            if body.get("outputs_mapping") is not None:
                row.outputs_mapping = rules.parse_outputs_mapping(
                    body["outputs_mapping"], rules.parse_parameters(pipeline.outputs, "outputs", output=True),
                    row.execution_rule)
            row.updated_at = utcnow()
        self._last_tick.pop(name, None)
        self._wake_scheduler()
        return self.get_deployment(name)

    async def delete_deployment(self, name: str) -> dict[str, Any]:
        with self.db.session() as s:
            row = self._deployment(s, name)
            rule = row.execution_rule
            s.delete(row)
        process = self.warm.pop(name, None)
        if process is not None:
            await process.stop()
        self._fresh_tokens.pop(name, None)
        self._last_tick.pop(name, None)
        return {"name": name, "execution_rule": rule}

    def new_endpoint_token(self, name: str, token: str | None = None) -> dict[str, Any]:
        token = token or secrets.token_urlsafe(32)
        if len(token) < 16 or len(token) > 256:
            raise InvalidInput("endpoint_token must be 16 to 256 characters", field="endpoint_token")
        with self.db.session() as s:
            row = self._deployment(s, name)
            if row.execution_rule != "endpoint":
                raise InvalidInput(f"deployment {name!r} is not an endpoint", field="endpoint_name")
            row.endpoint_token_hash = _hash(token)
            row.endpoint_token_created_at = utcnow()
        self._fresh_tokens[name] = (token, time.monotonic() + TOKEN_VISIBLE_S)
        return {"endpoint_token": token}

    def endpoint_for(self, path: str, token: str | None) -> tuple[str, str, Principal]:
        """The deployment and its pipeline behind an endpoint path, if `token` is its endpoint token (compared in
        constant time), and who the caller acts as (the face passes it to `act_as`): that endpoint, in its
        deployment's workspace only (an admin's deployment, of no workspace, is the admins': its endpoint acts as
        one)."""
        from modelport.domain.errors import Forbidden, Unauthenticated

        if not token:
            raise Unauthenticated("missing endpoint token: send Authorization: EndpointToken <token>")
        with self.db.session() as s:
            row = s.scalar(select(CraftDeployment).where(CraftDeployment.endpoint_url_path == path))
            expected = row.endpoint_token_hash if row is not None else _hash(secrets.token_hex(16))
            valid = hmac.compare_digest(_hash(token), expected or "")
            if row is None or not valid:
                raise Forbidden("invalid endpoint token for this endpoint")
            if not row.is_enabled:
                raise Forbidden(f"endpoint {path!r} is disabled")
            now = utcnow()
            if row.endpoint_token_used_at is None or (now - row.endpoint_token_used_at).total_seconds() > 60:
                row.endpoint_token_used_at = now
            caller = Principal(token_id=f"endpoint:{path}", name=f"endpoint {path}",
                               kind="admin" if row.workspace_id is None else "endpoint", workspace_id=row.workspace_id)
            return row.name, row.pipeline_name, caller

    async def start_warm(self, name: str) -> None:
        """low_latency: load the function once, keep the process for every execution of the deployment."""
        try:
            with self.db.session() as s:
                row = self._deployment(s, name)
                pipeline = self._pipeline(s, row.pipeline_name)
            spec = await self._function_spec(pipeline, f"deployment-{name}", "warm", name)
            process = FunctionProcess(spec)
            await process.start(300)
            old = self.warm.pop(name, None)
            self.warm[name] = process
            if old is not None:
                await old.stop()
        except Exception as exc:  # noqa: BLE001 - the deployment reports it; executions start processes instead
            log.warning("could not start the warm process of %s: %s", name, exc)
        self._notify(f"deployment:{name}")

    async def _function_spec(self, pipeline: CraftPipeline, log_name: str, kind: str, subject: str) -> FunctionSpec:
        python = await run_in_threadpool(self.environments.python_for, list(pipeline.requirements))
        return FunctionSpec(python, self.code_dir(pipeline.package_sha), pipeline.function_path,
                            pipeline.function_name, self.root / "logs" / f"{log_name}.log", kind, subject)

    # -- executions ---------------------------------------------------------------------------------------------------
    def environment_variables(self, workspace_id: int | None) -> dict[str, str]:
        """The values an execution of a pipeline of this workspace gets (its project's variables)."""
        column = CraftEnvironmentVariable.workspace_id
        with self.db.session() as s:
            query = select(CraftEnvironmentVariable).where(
                column.is_(None) if workspace_id is None else column == workspace_id)
            return {v.name: self.secrets.open(v.value) for v in s.scalars(query)}

    def environment_variable_names(self) -> list[str]:
        """What the API shows: which variables are set (in the caller's workspaces), never their values."""
        with self.db.session() as s:
            query = select(CraftEnvironmentVariable.name).order_by(CraftEnvironmentVariable.name)
            if (visible := visible_workspaces(s)) is not None:
                query = query.where(CraftEnvironmentVariable.workspace_id.in_(visible))
            return list(s.scalars(query))

    def set_environment_variable(self, name: Any, value: Any) -> None:
        if not isinstance(name, str) or not name or len(name) > 255 or not isinstance(value, str):
            raise InvalidInput("name and value must be strings", field="name")
        with self.db.session() as s:
            row = s.get(CraftEnvironmentVariable, name)
            if row is None:
                s.add(CraftEnvironmentVariable(name=name, value=self.secrets.seal(value),
                                               workspace_id=home_workspace(s)))
            elif not is_visible(s, row.workspace_id):
                raise AlreadyExists(f"environment variable {name!r} is taken by another project", field="name")
            else:
                row.value = self.secrets.seal(value)

    def delete_environment_variable(self, name: str) -> dict[str, Any]:
        with self.db.session() as s:
            row = s.get(CraftEnvironmentVariable, name)
            if row is None or not is_visible(s, row.workspace_id):
                raise NotFound(f"environment variable {name!r} not found", field="name")
            s.delete(row)
            return {"name": name}

    def _resolve_inputs(self, pipeline: CraftPipeline, mapping: list[dict[str, Any]], given: dict[str, Any],
                        files: dict[str, bytes]) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, bytes]]:
        """Each input's value from its source; a required input with no value is refused, naming it."""
        parameters = {p.name: p for p in rules.parse_parameters(pipeline.inputs, "inputs")}
        variables: dict[str, str] | None = None
        records, values, file_values = [], {}, {}
        for entry in mapping:
            name = entry["pipeline_input_name"]
            parameter = parameters[name]
            source = rules.source_of(entry)
            value: Any = None
            if source == "endpoint_input_name":
                key = entry[source]
                if parameter.data_type == "file" and key in files:
                    file_values[name] = files[key]
                    value = None
                else:
                    value = given.get(key)
            elif source == "constant_value":
                value = entry[source]
            elif source == "environment_variable_name":
                variables = self.environment_variables(pipeline.workspace_id) if variables is None else variables
                value = variables.get(entry[source])
            elif source == "datastore_path":
                path = self.datastore_path(entry[source])
                if not path.is_file():
                    raise InvalidInput(f"input {name!r}: nothing at datastore path {entry[source]!r}", field=name)
                if parameter.data_type == "file":
                    file_values[name] = path.read_bytes()
                else:
                    value = json.loads(path.read_text()) if parameter.data_type != "string" else path.read_text()
            omitted = False
            if value is None and name not in file_values and source != "is_null":
                value = entry.get("default_value", parameter.default_value)
                if value is None:
                    if entry.get("is_required", parameter.is_required):
                        raise InvalidInput(f"input {name!r} is required", field=name)
                    omitted = True  # not given and optional: the function's own default applies
            if name not in file_values and not omitted:
                values[name] = rules.check_value(parameter, value)
            records.append({"pipeline_input_name": name, "data_type": parameter.data_type,
                            "mapping_type": rules.MAPPING_TYPES[source],
                            "mapping_value": {k: v for k, v in entry.items() if k != "pipeline_input_name"},
                            # an environment variable's value is a secret: the execution records that it was used
                            "value": values.get(name) if parameter.data_type != "file"
                            and source != "environment_variable_name" else None})
        unknown = set(given) - {e.get("endpoint_input_name") for e in mapping}
        if unknown and mapping is not None:
            raise InvalidInput(f"unknown input {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
        return records, values, file_values

    def start_execution(self, *, pipeline_name: str, deployment_name: str | None, given: dict[str, Any],
                        files: dict[str, bytes], creator: str, inputs_mapping: list[dict[str, Any]] | None = None,
                        outputs_mapping: list[dict[str, Any]] | None = None, tick: datetime | None = None) -> str | None:
        """Record the execution (Running: it starts at once) and return its id; None when another server already
        fired this tick."""
        with self.db.session() as s:
            pipeline = self._pipeline(s, pipeline_name)
            if pipeline.status != "ready":
                raise InvalidInput(f"pipeline {pipeline_name!r} is {pipeline.status}, not ready", field="pipeline_name")
            mode, timeout = "elastic", self.default_timeout_s
            if deployment_name is not None:
                deployment = self._deployment(s, deployment_name)
                inputs_mapping, outputs_mapping = deployment.inputs_mapping, deployment.outputs_mapping
                mode, timeout = deployment.mode, float(deployment.execution_timeout_s or self.default_timeout_s)
        inputs = rules.parse_parameters(pipeline.inputs, "inputs")
        outputs = rules.parse_parameters(pipeline.outputs, "outputs", output=True)
        rule = "endpoint"  # a direct run: unmapped inputs and outputs are the run's own
        inputs_mapping = rules.parse_inputs_mapping(inputs_mapping, inputs, rule) if deployment_name is None \
            else inputs_mapping
        outputs_mapping = rules.parse_outputs_mapping(outputs_mapping, outputs, rule) if deployment_name is None \
            else outputs_mapping
        records, values, file_values = self._resolve_inputs(pipeline, inputs_mapping, given, files)
        execution_id = f"{pipeline_name}-{secrets.token_hex(6)}"
        folder = self.root / "executions" / execution_id
        for name, data in file_values.items():
            (folder / "inputs").mkdir(parents=True, exist_ok=True)
            (folder / "inputs" / name).write_bytes(data)
        output_records = [{"pipeline_output_name": m["pipeline_output_name"],
                           "data_type": next(p.data_type for p in outputs if p.name == m["pipeline_output_name"]),
                           "mapping_type": rules.MAPPING_TYPES.get(rules.source_of(m, rules.OUTPUT_DESTINATIONS)),
                           "mapping_value": {k: v for k, v in m.items() if k != "pipeline_output_name"},
                           "value": None} for m in outputs_mapping]
        row = CraftExecution(id=execution_id, pipeline_name=pipeline_name, deployment_name=deployment_name,
                             tick=tick, status="Running", inputs=records, outputs=output_records, created_by=creator,
                             created_at=utcnow(), workspace_id=pipeline.workspace_id)
        try:
            with self.db.session() as s:
                s.add(row)
        except IntegrityError:
            shutil.rmtree(folder, ignore_errors=True)
            return None
        request = {"execution_id": execution_id, "inputs": values,
                   "files": {n: str(folder / "inputs" / n) for n in file_values}}
        self._spawn(self._execute(execution_id, request, pipeline, deployment_name, mode, timeout))
        return execution_id

    async def _execute(self, execution_id: str, request: dict[str, Any], pipeline: CraftPipeline,
                       deployment: str | None, mode: str, timeout: float) -> None:
        started = time.time_ns()
        try:
            process = self.warm.get(deployment or "") if mode == "low_latency" else None
            if process is not None and process.alive:
                reply = await process.call(request, timeout)
            else:
                spec = await self._function_spec(pipeline, f"execution-{execution_id}", "execution", execution_id)
                reply = await run_once(spec, request, timeout)
                if mode == "low_latency" and deployment is not None:
                    self._spawn(self.start_warm(deployment))  # it died: bring it back for the next one
        except FunctionFailed as exc:
            reply = {"ok": False, "error": str(exc), "logs": [[time.time_ns(), "stderr", str(exc)]]}
        except Exception as exc:  # noqa: BLE001 - e.g. the environment could not be built
            log.exception("execution %s could not run", execution_id)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "logs": [[started, "stderr", str(exc)]]}
        await run_in_threadpool(self._finish, execution_id, reply)
        self._notify(f"execution:{execution_id}")

    def _finish(self, execution_id: str, reply: dict[str, Any]) -> None:
        folder = self.root / "executions" / execution_id
        folder.mkdir(parents=True, exist_ok=True)
        status, error = "Succeeded", None
        with self.db.session() as s:
            row = s.get(CraftExecution, execution_id)
            outputs = []
            produced = reply.get("outputs") or {}
            if not reply.get("ok"):
                status, error = "Failed", reply.get("error")
            for record in row.outputs:
                record = dict(record)
                name = record["pipeline_output_name"]
                if status == "Succeeded":
                    if name not in produced:
                        status, error = "Failed", f"the function did not return output {name!r}"
                    else:
                        try:
                            record["value"] = self._deliver(execution_id, record, produced[name], folder)
                        except (InvalidInput, OSError, ValueError) as exc:
                            status, error = "Failed", f"output {name!r}: {getattr(exc, 'message', exc)}"
                outputs.append(record)
            row.outputs = outputs
            row.status, row.error, row.ended_at = status, error, utcnow()
        logs = list(reply.get("logs") or [])
        if error and not reply.get("traceback"):
            logs.append([time.time_ns(), "stderr", error])
        with open(folder / "logs.jsonl", "a") as out:
            for ns, stream, message in logs:
                out.write(json.dumps({"timestamp": _iso(datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)),
                                      "message": message, "stream": stream}) + "\n")

    def _deliver(self, execution_id: str, record: dict[str, Any], value: Any, folder: Path) -> Any:
        """Type-check an output and send it where its mapping says; return what the execution record keeps."""
        parameter = rules.Parameter(record["pipeline_output_name"], record["data_type"])
        data: bytes | None = None
        if parameter.data_type == "file":
            if not (isinstance(value, dict) and "base64" in value):
                raise InvalidInput("a file output must be bytes or {'path': ...}")
            data = base64.b64decode(value["base64"])
            (folder / "outputs").mkdir(exist_ok=True)
            (folder / "outputs" / parameter.name).write_bytes(data)
            value = None
        else:
            rules.check_value(parameter, value)
        mapping = record["mapping_value"]
        if "datastore_path" in mapping:
            path = self.datastore_path(rules.render_datastore_path(mapping["datastore_path"], execution_id,
                                                                   datetime.now(timezone.utc)))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data if data is not None else
                             (value.encode() if isinstance(value, str) else json.dumps(value).encode()))
        if "is_null" in mapping:
            return None
        return value

    def get_execution(self, execution_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            row = s.get(CraftExecution, execution_id)
            if row is None or not is_visible(s, row.workspace_id):
                raise NotFound(f"execution {execution_id!r} not found", field="execution_id")
        return {"execution_id": row.id, "status": row.status, "pipeline_name": row.pipeline_name,
                "deployment_name": row.deployment_name, "created_at": _iso(row.created_at),
                "created_by": row.created_by, "end_date": _iso(row.ended_at), "error": row.error,
                "inputs": row.inputs, "outputs": row.outputs if row.status in FINISHED else []}

    def execution_output_file(self, execution_id: str, name: str) -> Path:
        self.get_execution(execution_id)
        path = self.root / "executions" / execution_id / "outputs" / name
        if not name.isidentifier() or not path.is_file():
            raise NotFound(f"execution {execution_id!r} has no file output {name!r}", field="output_name")
        return path

    def latest_execution(self, *, pipeline_name: str | None = None, deployment_name: str | None = None
                         ) -> dict[str, Any] | None:
        with self.db.session() as s:
            query = select(CraftExecution.id).order_by(CraftExecution.created_at.desc()).limit(1)
            if pipeline_name is not None:
                self._pipeline(s, pipeline_name)
                query = query.where(CraftExecution.pipeline_name == pipeline_name)
            if deployment_name is not None:
                self._deployment(s, deployment_name)
                query = query.where(CraftExecution.deployment_name == deployment_name)
            latest = s.scalar(query)
        return self.get_execution(latest) if latest else None

    def list_executions(self, pipeline_name: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            self._pipeline(s, pipeline_name)
            rows = list(s.scalars(select(CraftExecution).where(CraftExecution.pipeline_name == pipeline_name)
                                  .order_by(CraftExecution.created_at)))
        return [{"execution_id": r.id, "status": r.status, "deployment_name": r.deployment_name, "error": r.error,
                 "created_at": _iso(r.created_at), "end_date": _iso(r.ended_at)} for r in rows]

    def execution_logs(self, execution_id: str, body: Any) -> list[list[dict[str, Any]]]:
        self.get_execution(execution_id)
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object of from, to and limit")
        low, high, limit = body.get("from"), body.get("to"), body.get("limit")
        for key, value in (("from", low), ("to", high), ("limit", limit)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise InvalidInput(f"{key} must be a non-negative integer", field=key)
        path = self.root / "executions" / execution_id / "logs.jsonl"
        lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

        def millis(entry: dict[str, Any]) -> int:
            return int(datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp() * 1000)

        lines = [e for e in lines if (low is None or millis(e) >= low) and (high is None or millis(e) <= high)]
        return [lines[:limit] if limit else lines]

    def delete_execution(self, execution_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            row = s.get(CraftExecution, execution_id)
            if row is None or not is_visible(s, row.workspace_id):
                raise NotFound(f"execution {execution_id!r} not found", field="execution_id")
            if row.status not in FINISHED:
                raise Conflict(f"execution {execution_id!r} is {row.status}")
            s.delete(row)
        shutil.rmtree(self.root / "executions" / execution_id, ignore_errors=True)
        return {"execution_id": execution_id}

    async def wait_for_execution(self, execution_id: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        key = f"execution:{execution_id}"
        while True:
            changed = self.watch(key)
            execution = await run_in_threadpool(self.get_execution, execution_id)
            left = deadline - time.monotonic()
            if execution["status"] in FINISHED or left <= 0:
                return execution
            await self.wait_for_change(key, min(left, 1.0), changed)

    # -- datastore ----------------------------------------------------------------------------------------------------
    def list_datastore(self, folder: str | None) -> list[dict[str, Any]]:
        root = self.root / "datastore"
        base = self.datastore_path(folder) if folder else root
        if not base.exists():
            return []
        items = []
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            stat = path.stat()
            items.append({"path": path.relative_to(root).as_posix(), "size": stat.st_size,
                          "last_modified": _iso(datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc))})
        return items

    def sign(self, secret: bytes, action: str, path: str, expires: int) -> str:
        return hmac.new(secret, f"{action}\n{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    # -- periodic deployments -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._scheduler = self._loop.create_task(self._schedule_forever())

    async def restore(self) -> None:
        """Warm processes of low-latency deployments, and pipelines left pending by a stop, come back."""
        with self.db.session() as s:
            warm = list(s.scalars(select(CraftDeployment.name).where(CraftDeployment.mode == "low_latency",
                                                                     CraftDeployment.is_enabled.is_(True))))
            pending = list(s.scalars(select(CraftPipeline.name).where(CraftPipeline.status == "creation_pending")))
            stuck = list(s.scalars(select(CraftExecution).where(CraftExecution.status.in_(("Pending", "Running")))))
            for execution in stuck:  # their processes died with the previous server
                execution.status, execution.error, execution.ended_at = "Failed", "the server stopped", utcnow()
        for name in pending:
            self._spawn(self.prepare_pipeline(name))
        for name in warm:
            self._spawn(self.start_warm(name))

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(p.stop() for p in self.warm.values()), return_exceptions=True)
        self.warm.clear()

    async def _schedule_forever(self) -> None:
        while True:
            try:
                delay = await run_in_threadpool(self._fire_due)
            except Exception:  # noqa: BLE001 - a bad round must not stop the schedule
                log.exception("periodic deployments: a scheduling round failed")
                delay = 1.0
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.05, min(delay, 1.0)))
            except asyncio.TimeoutError:
                pass

    def _fire_due(self) -> float:
        now = datetime.now(timezone.utc)
        with self.db.session() as s:
            rows = list(s.scalars(select(CraftDeployment).where(CraftDeployment.execution_rule == "periodic",
                                                                CraftDeployment.is_enabled.is_(True))))
        soonest = 1.0
        for row in rows:
            last = self._last_tick.setdefault(row.name, max(now, row.updated_at))
            due = next_fire(row.schedule or "", last)
            if due <= now:
                self._last_tick[row.name] = due
                try:
                    self.start_execution(pipeline_name=row.pipeline_name, deployment_name=row.name, given={},
                                         files={}, creator="schedule", tick=due)
                except Exception as exc:  # noqa: BLE001 - e.g. a datastore input is missing: skip this tick
                    log.warning("periodic deployment %s could not start at %s: %s", row.name, due, exc)
                due = next_fire(row.schedule or "", due)
            soonest = min(soonest, (due - now).total_seconds())
        return soonest
