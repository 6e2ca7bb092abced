"""SQLAlchemy tables. The same models serve SQLite and PostgreSQL; Alembic migrations mirror them."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text, TypeDecorator, UniqueConstraint
from sqlalchemy import DateTime as _DateTime
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class DateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite stores them naive; we give the zone back on read)."""

    impl = _DateTime(timezone=True)
    cache_ok = True

    def __init__(self, timezone: bool = True) -> None:  # noqa: ARG002 - signature kept for the migrations
        super().__init__()

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # admin | user | service
    # service keys (the Dataiku face's prediction keys): the services they may call; empty means all of them
    services: Mapped[list[Any] | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the user a non-admin token belongs to, and the workspace faces without workspaces act in (see services/access)
    user_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    workspace_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class User(Base):
    """A person (Wallaroo identifies users by email); every non-admin token belongs to one."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WorkspaceMember(Base):
    """Wallaroo's workspace membership: role `owner` or `collaborator`."""

    __tablename__ = "workspace_members"

    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ConsoleSession(Base):
    """A signed-in console session; the cookie holds a random secret, this row its sha256. Deleting the row (logout,
    token revocation, user removal) ends the session at once."""

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[str] = mapped_column(String(36), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Model(Base):
    """A named model in a workspace; its uploads are its versions."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    owner_id: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[ModelVersion]] = relationship(back_populates="model", order_by="ModelVersion.id")


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    version: Mapped[str] = mapped_column(String(36), unique=True)
    sha: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    file_name: Mapped[str] = mapped_column(String(255))
    framework: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    visibility: Mapped[str] = mapped_column(String(16), default="private")
    arch: Mapped[str] = mapped_column(String(16), default="x86")
    accel: Mapped[str] = mapped_column(String(16), default="none")
    python_version: Mapped[str | None] = mapped_column(String(16), nullable=True)
    requirements: Mapped[list[Any]] = mapped_column(default=list)
    framework_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    owner_id: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    model: Mapped[Model] = relationship(back_populates="versions")


class Pipeline(Base):
    __tablename__ = "pipelines"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    owner_id: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[PipelineVersion]] = relationship(back_populates="pipeline", order_by="PipelineVersion.id")


class PipelineVersion(Base):
    __tablename__ = "pipeline_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"), index=True)
    version: Mapped[str] = mapped_column(String(36), unique=True)
    definition: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    pipeline: Mapped[Pipeline] = relationship(back_populates="versions")


class Deployment(Base):
    """Desired state of a live service: what `apply` should make true, restored after a restart."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), index=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id"), unique=True)
    desired_state: Mapped[str] = mapped_column(String(16))  # running | stopped
    engine_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    variants: Mapped[list[DeploymentVariant]] = relationship(
        back_populates="deployment", order_by="DeploymentVariant.id", cascade="all, delete-orphan")


class DeploymentVariant(Base):
    __tablename__ = "deployment_variants"
    __table_args__ = (UniqueConstraint("deployment_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    pipeline_version_id: Mapped[int] = mapped_column(ForeignKey("pipeline_versions.id"))
    weight: Mapped[float] = mapped_column(default=1.0)
    scaling: Mapped[dict[str, Any]] = mapped_column()
    batching: Mapped[dict[str, Any]] = mapped_column()

    deployment: Mapped[Deployment] = relationship(back_populates="variants")


class InferenceLog(Base):
    """One inference request's input and output, kept per pipeline version with bounded retention."""

    __tablename__ = "inference_logs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    pipeline_version: Mapped[str] = mapped_column(String(36), index=True)
    deployment_id: Mapped[int] = mapped_column(Integer, index=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    rows: Mapped[int] = mapped_column(Integer)
    elapsed_ns: Mapped[int] = mapped_column(BigInteger)
    inputs: Mapped[dict[str, Any]] = mapped_column()
    outputs: Mapped[dict[str, Any]] = mapped_column()


class Orchestration(Base):
    """An uploaded code package (ZIP with main.py and at most one requirements.txt)."""

    __tablename__ = "orchestrations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    file_name: Mapped[str] = mapped_column(String(255))
    sha: Mapped[str] = mapped_column(String(64), index=True)
    entrypoint: Mapped[str] = mapped_column(Text)
    requirements: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(32))
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), index=True)
    orchestration_id: Mapped[str] = mapped_column(ForeignKey("orchestrations.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # once | scheduled | continuous
    schedule: Mapped[str | None] = mapped_column(String(255), nullable=True)
    overlap: Mapped[str] = mapped_column(String(16), default="allow")
    timeout_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    arguments: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16))
    killed: Mapped[bool] = mapped_column(Boolean, default=False)
    next_fire_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    failures_in_a_row: Mapped[int] = mapped_column(Integer, default=0)
    owner_id: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TaskRun(Base):
    """One execution. (task_id, tick) is unique: two servers firing the same scheduled tick insert one row."""

    __tablename__ = "task_runs"
    __table_args__ = (UniqueConstraint("task_id", "tick"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"), index=True)
    tick: Mapped[str] = mapped_column(String(64))  # the scheduled time it fires for, or a unique sequence value
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    server_id: Mapped[str | None] = mapped_column(Text, nullable=True)  # host:home:port of the server running it
    token_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AwsAccessKey(Base):
    """An access key pair for SigV4-signed faces. SigV4 verification needs the secret itself (an HMAC key), so it is
    kept, unlike bearer tokens which are kept as hashes."""

    __tablename__ = "aws_access_keys"

    access_key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret: Mapped[str] = mapped_column(Text)  # sealed (store/secrets.py)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    workspace_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class SageMakerModel(Base):
    __tablename__ = "sagemaker_models"

    workspace_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # services/access.py
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    arn: Mapped[str] = mapped_column(String(255))
    definition: Mapped[dict[str, Any]] = mapped_column()  # the CreateModel request, as given
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SageMakerEndpointConfig(Base):
    __tablename__ = "sagemaker_endpoint_configs"

    workspace_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # services/access.py
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    arn: Mapped[str] = mapped_column(String(255))
    definition: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SageMakerEndpoint(Base):
    __tablename__ = "sagemaker_endpoints"

    workspace_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # services/access.py
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    arn: Mapped[str] = mapped_column(String(255))
    config_name: Mapped[str] = mapped_column(String(63))
    variant_overrides: Mapped[dict[str, Any]] = mapped_column(default=dict)  # UpdateEndpointWeightsAndCapacities
    status: Mapped[str] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DataikuService(Base):
    """A Dataiku API node service: its generations, and the mapping that spreads traffic over them."""

    __tablename__ = "dataiku_services"

    workspace_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # services/access.py
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    mapping: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)  # domain.bundles.Mapping.to_json()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DataikuGeneration(Base):
    """One imported bundle of a service; `preloaded` asks for its replicas to run even without traffic."""

    __tablename__ = "dataiku_generations"
    __table_args__ = (UniqueConstraint("service_id", "generation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("dataiku_services.id", ondelete="CASCADE"), index=True)
    generation: Mapped[str] = mapped_column(String(64))
    bundle_sha: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column()
    preloaded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DataikuEndpoint(Base):
    """A (service, endpoint id) pair: the plane serves each as one deployment whose variants are generations."""

    __tablename__ = "dataiku_endpoints"
    __table_args__ = (UniqueConstraint("service_id", "endpoint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("dataiku_services.id", ondelete="CASCADE"), index=True)
    endpoint: Mapped[str] = mapped_column(String(64))


class CraftPipeline(Base):
    """A Craft AI pipeline: one Python function from an uploaded code folder, with typed inputs and outputs."""

    __tablename__ = "craft_pipelines"

    workspace_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # services/access.py
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    function_path: Mapped[str] = mapped_column(Text)
    function_name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    inputs: Mapped[list[Any]] = mapped_column(default=list)
    outputs: Mapped[list[Any]] = mapped_column(default=list)
    container_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    package_sha: Mapped[str] = mapped_column(String(64))
    requirements: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(32))  # creation_pending | ready | creation_failed
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CraftDeployment(Base):
    """A pipeline run on a rule: `endpoint` (token-protected HTTP) or `periodic` (cron)."""

    __tablename__ = "craft_deployments"

    workspace_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # services/access.py
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    pipeline_name: Mapped[str] = mapped_column(String(63), index=True)
    execution_rule: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    schedule: Mapped[str | None] = mapped_column(String(120), nullable=True)
    endpoint_url_path: Mapped[str | None] = mapped_column(String(63), nullable=True, unique=True)
    endpoint_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    endpoint_token_created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    endpoint_token_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    inputs_mapping: Mapped[list[Any]] = mapped_column(default=list)
    outputs_mapping: Mapped[list[Any]] = mapped_column(default=list)
    execution_timeout_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CraftExecution(Base):
    """One run of a pipeline; `tick` is the schedule time of a periodic run (one execution per tick, even with
    several servers)."""

    __tablename__ = "craft_executions"
    __table_args__ = (UniqueConstraint("deployment_name", "tick"),)

    workspace_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # services/access.py
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    pipeline_name: Mapped[str] = mapped_column(String(63), index=True)
    deployment_name: Mapped[str | None] = mapped_column(String(63), nullable=True, index=True)
    tick: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # Pending | Running | Succeeded | Failed
    inputs: Mapped[list[Any]] = mapped_column(default=list)
    outputs: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CraftEnvironmentVariable(Base):
    __tablename__ = "craft_environment_variables"

    workspace_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # services/access.py
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)  # sealed (store/secrets.py)


class ServerRecord(Base):
    """One incarnation of `modelport serve`: a row per start, its heartbeat kept fresh while it runs, removed on a
    clean stop. `name` is the server's identity across restarts (host and home folder); `pid` with `pid_start`
    (/proc start time) and `boot_id` say whether that incarnation still runs, without mistaking a reused pid."""

    __tablename__ = "servers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(1024), index=True)
    home: Mapped[str] = mapped_column(Text)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    pid_start: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    boot_id: Mapped[str] = mapped_column(String(64), default="")
    url: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ServerProcess(Base):
    """A process a server started and owns (a replica, a task run, a Craft AI execution or warm process, a model
    check, an environment build): written when it starts, removed when it ends. `start_time` (/proc start time)
    makes (pid, start_time) name one process for good; `pgid` reaches what it started."""

    __tablename__ = "server_processes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # replica | task_run | execution | warm | model_check | environment
    subject: Mapped[str] = mapped_column(String(512), default="")  # the variant, run id, deployment, ... it serves
    description: Mapped[str] = mapped_column(Text, default="")
    pid: Mapped[int] = mapped_column(Integer)
    pgid: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
