"""SageMaker hosting on the core: Models, EndpointConfigs and Endpoints recorded as SageMaker describes them, and
endpoints served by the same plane as every deployment (variants, weights, zero-downtime switch).

Model artifacts: `ModelDataUrl` is fetched (file:// within configured roots, https://, s3:// from a configurable
S3-compatible endpoint), a model.tar.gz is unpacked safely, and the model file is served by the runtime the
container image names (sklearn, xgboost, onnx).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import shutil
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from modelport.domain.deployments import Batching, DeploymentSpec, DeploymentStatus, ModelSpec, Scaling, VariantSpec
from modelport.domain.errors import InvalidInput, ModelportError
from modelport.jobs.environments import normalise
from modelport.jobs.packages import extract_tar
from modelport.serving.plane import ServingPlane
from modelport.store.database import Database
from modelport.domain.entities import Principal
from modelport.services.access import home_workspace, is_visible, visible_workspaces
from modelport.store.secrets import SecretBox
from modelport.store.tables import (
    AwsAccessKey, SageMakerEndpoint, SageMakerEndpointConfig, SageMakerModel, utcnow,
)

log = logging.getLogger(__name__)

RESOURCE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
MODEL_NAME = re.compile(r"^[a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?$")
MODEL_DATA_URL = re.compile(r"^(https|s3|file)://([^/]*)/?(.*)$")
ROLE_ARN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
ENV_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
ENDPOINT_STATUSES = ("OutOfService", "Creating", "Updating", "SystemUpdating", "RollingBack", "InService",
                     "Deleting", "Failed", "UpdateRollbackFailed")
# Container images name the framework; the model file a framework's container loads by default.
IMAGE_FRAMEWORKS = (("xgboost", "xgboost"), ("sklearn", "sklearn"), ("scikit", "sklearn"), ("onnx", "onnx"))
MODEL_FILES = {"sklearn": ("model.joblib", "model.pkl", "*.joblib", "*.pkl"),
               "xgboost": ("xgboost-model", "model.json", "model.ubj", "model.bst", "*.json", "*.ubj"),
               "onnx": ("model.onnx", "*.onnx")}


class SageMakerError(ModelportError):
    """An error with AWS's code (`__type`); 400 unless said otherwise."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def validation(message: str) -> SageMakerError:
    return SageMakerError("ValidationException", message)


def framework_of(image: str) -> str:
    lowered = image.lower()
    for marker, framework in IMAGE_FRAMEWORKS:
        if marker in lowered:
            return framework
    raise SageMakerError("ValidationException", f"image {image!r} names no framework modelport serves "
                         "(sklearn, xgboost or onnx)")


class SageMakerService:
    def __init__(self, db: Database, plane: ServingPlane, root: Path, *, account_id: str,
                 file_roots: list[Path], s3_endpoint_url: str | None, max_artifact_bytes: int,
                 secrets: SecretBox) -> None:
        self.db = db
        self.secrets = secrets  # access keys' secrets are sealed at rest; SigV4 needs them in plain text
        self.plane = plane
        self.root = root
        self.account_id = account_id
        self.file_roots = [p.resolve() for p in file_roots]
        self.s3_endpoint_url = s3_endpoint_url
        self.max_artifact_bytes = max_artifact_bytes
        self._tasks: set[asyncio.Task[Any]] = set()
        self._secrets: dict[str, tuple[str, float, Principal]] = {}

    # -- access keys ---------------------------------------------------------------------------------------------------
    def create_key(self, name: str, *, user_id: str | None = None,
                   workspace_id: int | None = None) -> tuple[str, str]:
        """A new key pair; the secret is returned this once and stored sealed. A key bound to a workspace acts in
        it (see services/access.py); an unbound key, made by an admin, sees every workspace."""
        access_key = "AKMP" + secrets.token_hex(8).upper()
        secret = secrets.token_urlsafe(30)
        with self.db.session() as s:
            s.add(AwsAccessKey(access_key_id=access_key, secret=self.secrets.seal(secret), name=name,
                               user_id=user_id, workspace_id=workspace_id, created_at=utcnow()))
        return access_key, secret

    def forget_key(self, access_key: str) -> None:
        """Drop a revoked key from the cache: refused from the next request on."""
        self._secrets.pop(access_key, None)

    def cached_secret(self, access_key: str) -> str | None:
        """A recently verified key's secret, without I/O (the invocation hot path)."""
        hit = self._secrets.get(access_key)
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    def principal_of(self, access_key: str) -> Principal:
        """Who a key acts as: its user, in its bound workspace; a key of no user and no workspace (made by an admin,
        as `modelport token create --aws` does by default) acts as an admin. Known after `secret_for`."""
        return self._secrets[access_key][2]

    def secret_for(self, access_key: str) -> str:
        with self.db.session() as s:
            row = s.get(AwsAccessKey, access_key)
            if row is None or row.revoked_at is not None:
                self._secrets.pop(access_key, None)
                raise SageMakerError("UnrecognizedClientException",
                                     "The security token included in the request is invalid.", 403)
            if len(self._secrets) > 10_000:
                self._secrets.clear()
            secret = self.secrets.open(row.secret)
            now = utcnow()
            if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
                row.last_used_at = now
            kind = "admin" if row.user_id is None and row.workspace_id is None else "user"
            principal = Principal(row.access_key_id, row.name, kind, (), row.user_id, row.workspace_id)
            self._secrets[access_key] = (secret, time.monotonic() + 5.0, principal)
            return secret

    def arn(self, kind: str, name: str, region: str) -> str:
        return f"arn:aws:sagemaker:{region}:{self.account_id}:{kind}/{name.lower()}"

    # -- models ----------------------------------------------------------------------------------------------------------
    def create_model(self, request: dict[str, Any], region: str) -> dict[str, Any]:
        name = _name(request, "ModelName", MODEL_NAME)
        container = request.get("PrimaryContainer") or (request.get("Containers") or [None])[0]
        if not isinstance(container, dict):
            raise validation("either PrimaryContainer or Containers is required")
        image = container.get("Image")
        if not isinstance(image, str) or not image:
            raise validation("1 validation error detected: Value null at 'primaryContainer.image' failed to satisfy "
                             "constraint: Member must not be null")
        url = container.get("ModelDataUrl")
        if url is not None and (not isinstance(url, str) or not MODEL_DATA_URL.match(url) or len(url) > 1024):
            raise validation(f"Value {url!r} at 'primaryContainer.modelDataUrl' failed to satisfy constraint: Member "
                             "must satisfy regular expression pattern: ^(https|s3|file)://([^/]+)/?(.*)$")
        environment = container.get("Environment") or {}
        if not isinstance(environment, dict) or len(environment) > 100 or any(
                not ENV_KEY.match(str(k)) or len(str(k)) > 1024 or len(str(v)) > 1024 for k, v in environment.items()):
            raise validation("Environment: at most 100 entries, keys [a-zA-Z_][a-zA-Z0-9_]*, keys and values at most "
                             "1024 characters")
        role = request.get("ExecutionRoleArn")
        if role is not None and (not isinstance(role, str) or not ROLE_ARN.match(role)):
            raise validation(f"Value {role!r} at 'executionRoleArn' failed to satisfy constraint: Member must satisfy "
                             "regular expression pattern: ^arn:aws[a-z\\-]*:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+$")
        arn = self.arn("model", name, region)
        with self.db.session() as s:
            if s.get(SageMakerModel, name) is not None:
                raise validation(f'Cannot create already existing model "{arn}".')
            s.add(SageMakerModel(name=name, arn=arn, definition={**request, "PrimaryContainer": container},
                                 workspace_id=home_workspace(s)))
        return {"ModelArn": arn}

    def _model(self, s: Any, name: str) -> SageMakerModel:
        row = s.get(SageMakerModel, name)
        if row is None or not is_visible(s, row.workspace_id):  # another workspace's: as if it did not exist
            raise validation(f'Could not find model "{self.arn("model", name, "*")}".')
        return row

    def _config(self, s: Any, name: str) -> SageMakerEndpointConfig:
        row = s.get(SageMakerEndpointConfig, name)
        if row is None or not is_visible(s, row.workspace_id):
            raise validation(f'Could not find endpoint configuration "{name}".')
        return row

    def describe_model(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _required(request, "ModelName")
        with self.db.session() as s:
            row = self._model(s, name)
            d = row.definition
            return {"ModelName": row.name, "ModelArn": row.arn, "CreationTime": row.created_at.timestamp(),
                    "PrimaryContainer": d.get("PrimaryContainer"), "ExecutionRoleArn": d.get("ExecutionRoleArn"),
                    "EnableNetworkIsolation": d.get("EnableNetworkIsolation", False)}

    def delete_model(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _required(request, "ModelName")
        with self.db.session() as s:
            s.delete(self._model(s, name))
        return {}

    def list_models(self, request: dict[str, Any]) -> dict[str, Any]:
        with self.db.session() as s:
            query = select(SageMakerModel)
            if (visible := visible_workspaces(s)) is not None:
                query = query.where(SageMakerModel.workspace_id.in_(visible))
            rows = list(s.scalars(query))
        items = [{"ModelName": r.name, "ModelArn": r.arn, "CreationTime": r.created_at} for r in rows]
        return _listing("Models", items, request, "ModelName")

    # -- endpoint configs ------------------------------------------------------------------------------------------------
    def create_endpoint_config(self, request: dict[str, Any], region: str) -> dict[str, Any]:
        name = _name(request, "EndpointConfigName", RESOURCE_NAME)
        variants = request.get("ProductionVariants")
        if not isinstance(variants, list) or not 1 <= len(variants) <= 10:
            raise validation("ProductionVariants must list 1 to 10 variants")
        seen = set()
        with self.db.session() as s:
            for i, v in enumerate(variants):
                if not isinstance(v, dict):
                    raise validation(f"ProductionVariants[{i}] must be an object")
                variant_name = _name(v, "VariantName", RESOURCE_NAME, where=f"productionVariants.{i + 1}.member.")
                if variant_name in seen:
                    raise validation(f"The variant name(s) [{variant_name}] are not unique.")
                seen.add(variant_name)
                model = v.get("ModelName")
                known = s.get(SageMakerModel, model) if isinstance(model, str) else None
                if known is None or not is_visible(s, known.workspace_id):
                    raise validation(f'Could not find model "{self.arn("model", str(model), region)}".')
                count = v.get("InitialInstanceCount", 1)
                if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 16:
                    raise validation(f"InitialInstanceCount of {variant_name} must be between 1 and 16 here")
                weight = v.get("InitialVariantWeight", 1.0)
                if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                    raise validation(f"InitialVariantWeight of {variant_name} must be a number >= 0")
            arn = self.arn("endpoint-config", name, region)
            if s.get(SageMakerEndpointConfig, name) is not None:
                raise validation(f'Cannot create already existing endpoint configuration "{arn}".')
            s.add(SageMakerEndpointConfig(name=name, arn=arn, definition=request, workspace_id=home_workspace(s)))
        return {"EndpointConfigArn": arn}

    def describe_endpoint_config(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _required(request, "EndpointConfigName")
        with self.db.session() as s:
            row = self._config(s, name)
            return {"EndpointConfigName": row.name, "EndpointConfigArn": row.arn,
                    "ProductionVariants": row.definition["ProductionVariants"],
                    "CreationTime": row.created_at.timestamp()}

    def delete_endpoint_config(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _required(request, "EndpointConfigName")
        with self.db.session() as s:
            s.delete(self._config(s, name))
        return {}

    def list_endpoint_configs(self, request: dict[str, Any]) -> dict[str, Any]:
        with self.db.session() as s:
            query = select(SageMakerEndpointConfig)
            if (visible := visible_workspaces(s)) is not None:
                query = query.where(SageMakerEndpointConfig.workspace_id.in_(visible))
            rows = list(s.scalars(query))
        items = [{"EndpointConfigName": r.name, "EndpointConfigArn": r.arn, "CreationTime": r.created_at} for r in rows]
        return _listing("EndpointConfigs", items, request, "EndpointConfigName")

    # -- endpoints -------------------------------------------------------------------------------------------------------
    def create_endpoint(self, request: dict[str, Any], region: str) -> dict[str, Any]:
        name = _name(request, "EndpointName", RESOURCE_NAME)
        config = _required(request, "EndpointConfigName")
        arn = self.arn("endpoint", name, region)
        with self.db.session() as s:
            self._config(s, config)
            if s.scalar(select(SageMakerEndpoint.id).where(SageMakerEndpoint.name == name)) is not None:
                raise validation(f'Cannot create already existing endpoint "{arn}".')
            s.add(SageMakerEndpoint(name=name, arn=arn, config_name=config, status="Creating",
                                    workspace_id=home_workspace(s)))
        return {"EndpointArn": arn}

    def _endpoint(self, s: Any, name: str) -> SageMakerEndpoint:
        row = s.scalar(select(SageMakerEndpoint).where(SageMakerEndpoint.name == name))
        if row is None or not is_visible(s, row.workspace_id):
            raise validation(f"Could not find endpoint \"{self.arn('endpoint', name, '*')}\".")
        return row

    def describe_endpoint(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _required(request, "EndpointName")
        with self.db.session() as s:
            row = self._endpoint(s, name)
            config = s.get(SageMakerEndpointConfig, row.config_name)
            described = {"EndpointName": row.name, "EndpointArn": row.arn, "EndpointConfigName": row.config_name,
                         "EndpointStatus": row.status, "CreationTime": row.created_at.timestamp(),
                         "LastModifiedTime": row.updated_at.timestamp()}
            if row.failure_reason:
                described["FailureReason"] = row.failure_reason
            live = self.plane.deployments.get(f"sagemaker:{row.id}")
            row_overrides = dict(row.variant_overrides or {})
            images = {}  # the image each variant's model specifies, as AWS shows it in DeployedImages
            for v in (config.definition["ProductionVariants"] if config else []):
                model = s.get(SageMakerModel, v["ModelName"])
                images[v["VariantName"]] = (model.definition.get("PrimaryContainer") or {}).get("Image") \
                    if model is not None else None
        summaries = []
        for v in (config.definition["ProductionVariants"] if config else []):
            variant = next((x for x in live.variants if x.name == v["VariantName"]), None) if live else None
            running = sum(1 for r in variant.replicas if r.state == "Running") if variant else 0
            image = images.get(v["VariantName"])
            summaries.append({"VariantName": v["VariantName"],
                              # as given, like DesiredWeight (AWS does not normalise); the plane's share is internal
                              "CurrentWeight": float(variant.spec.weight) if variant else 0.0,
                              "DesiredWeight": float((row_overrides.get(v["VariantName"]) or {}).get(
                                  "DesiredWeight", v.get("InitialVariantWeight", 1.0))),
                              "CurrentInstanceCount": running,
                              "DesiredInstanceCount": (row_overrides.get(v["VariantName"]) or {}).get(
                                  "DesiredInstanceCount", v.get("InitialInstanceCount", 1)),
                              "DeployedImages": [{"SpecifiedImage": image, "ResolvedImage": image}] if image else []})
        if summaries:
            described["ProductionVariants"] = summaries
        return described

    def update_endpoint(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Point the endpoint at another config; the switch to it is the plane's zero-downtime variant swap."""
        name = _required(request, "EndpointName")
        config = _required(request, "EndpointConfigName")
        with self.db.session() as s:
            row = self._endpoint(s, name)
            self._config(s, config)
            if row.status not in ("InService", "Failed"):
                raise validation(f"Cannot update in-progress endpoint \"{row.arn}\".")
            row.config_name, row.variant_overrides = config, {}
            row.status, row.failure_reason, row.updated_at = "Updating", None, utcnow()
            return row.id, {"EndpointArn": row.arn}

    def update_weights(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = _required(request, "EndpointName")
        desired = request.get("DesiredWeightsAndCapacities")
        if not isinstance(desired, list) or not desired:
            raise validation("DesiredWeightsAndCapacities must list at least one variant")
        with self.db.session() as s:
            row = self._endpoint(s, name)
            if row.status != "InService":
                raise validation(f"Cannot update in-progress endpoint \"{row.arn}\".")
            config = s.get(SageMakerEndpointConfig, row.config_name)
            known = {v["VariantName"] for v in (config.definition["ProductionVariants"] if config else [])}
            overrides = dict(row.variant_overrides or {})
            for item in desired:
                variant = item.get("VariantName") if isinstance(item, dict) else None
                if variant not in known:
                    raise validation(f"The variant name {variant!r} is not in endpoint {name!r}.")
                weight, count = item.get("DesiredWeight"), item.get("DesiredInstanceCount")
                if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0):
                    raise validation("DesiredWeight must be a number >= 0")
                if count is not None and (isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 16):
                    raise validation("DesiredInstanceCount must be between 1 and 16 here")
                entry = dict(overrides.get(variant, {}))
                entry.update({k: v for k, v in (("DesiredWeight", weight), ("DesiredInstanceCount", count)) if v is not None})
                overrides[variant] = entry
            row.variant_overrides = overrides
            row.status, row.updated_at = "Updating", utcnow()
            return row.id, {"EndpointArn": row.arn}

    def delete_endpoint(self, request: dict[str, Any]) -> int:
        name = _required(request, "EndpointName")
        with self.db.session() as s:
            row = self._endpoint(s, name)
            row.status, row.updated_at = "Deleting", utcnow()
            return row.id

    def forget_endpoint(self, endpoint_id: int) -> None:
        with self.db.session() as s:
            row = s.get(SageMakerEndpoint, endpoint_id)
            if row is not None:
                s.delete(row)
        shutil.rmtree(self.root / "endpoints" / str(endpoint_id), ignore_errors=True)

    def list_endpoints(self, request: dict[str, Any]) -> dict[str, Any]:
        status = request.get("StatusEquals")
        if status is not None and status not in ENDPOINT_STATUSES:
            raise validation(f"Value {status!r} at 'statusEquals' failed to satisfy constraint: Member must satisfy "
                             f"enum value set: [{', '.join(ENDPOINT_STATUSES)}]")
        with self.db.session() as s:
            query = select(SageMakerEndpoint)
            if (visible := visible_workspaces(s)) is not None:
                query = query.where(SageMakerEndpoint.workspace_id.in_(visible))
            rows = list(s.scalars(query))
        items = [{"EndpointName": r.name, "EndpointArn": r.arn, "EndpointStatus": r.status,
                  "CreationTime": r.created_at, "LastModifiedTime": r.updated_at} for r in rows
                 if status is None or r.status == status]
        return _listing("Endpoints", items, request, "EndpointName")

    def set_status(self, endpoint_id: int, status: str, reason: str | None = None) -> None:
        with self.db.session() as s:
            row = s.get(SageMakerEndpoint, endpoint_id)
            if row is not None and row.status != "Deleting":
                row.status, row.failure_reason, row.updated_at = status, reason, utcnow()

    # -- provisioning: artifacts -> spec -> plane ------------------------------------------------------------------------
    def build_spec(self, endpoint_id: int) -> DeploymentSpec:
        """Fetch and unpack every variant's model; raises SageMakerError with the reason an endpoint fails."""
        with self.db.session() as s:
            row = s.get(SageMakerEndpoint, endpoint_id)
            assert row is not None
            config = s.get(SageMakerEndpointConfig, row.config_name)
            if config is None:
                raise SageMakerError("ValidationException", f"endpoint configuration {row.config_name!r} was deleted")
            models = {v["ModelName"]: s.get(SageMakerModel, v["ModelName"]) for v in config.definition["ProductionVariants"]}
            name, variants_def, overrides = row.name, config.definition["ProductionVariants"], dict(row.variant_overrides or {})
            config_name, workspace_id = row.config_name, row.workspace_id or 0  # 0: no workspace, admins only
        variants = []
        for v in variants_def:
            model = models[v["ModelName"]]
            if model is None:
                raise SageMakerError("ValidationException", f"model {v['ModelName']!r} was deleted")
            container = model.definition["PrimaryContainer"]
            # per config: an update never deletes files under a variant that still serves
            folder = self.root / "endpoints" / str(endpoint_id) / config_name / v["VariantName"]
            path, sha, framework, requirements = self._fetch(container.get("ModelDataUrl"), folder, container["Image"])
            environment = tuple(sorted((str(k), str(val)) for k, val in (container.get("Environment") or {}).items()))
            override = overrides.get(v["VariantName"], {})
            count = int(override.get("DesiredInstanceCount", v.get("InitialInstanceCount", 1)))
            variants.append(VariantSpec(
                name=v["VariantName"], pipeline_version=f"{model.name}@{sha[:12]}", pipeline_version_pk=0,
                steps=((ModelSpec(model.name, model.name, sha, framework, str(path), requirements, environment),),),
                weight=float(override.get("DesiredWeight", v.get("InitialVariantWeight", 1.0))),
                scaling=Scaling(initial=count, minimum=count, maximum=count), batching=Batching()))
        return DeploymentSpec(endpoint_id, name, workspace_id, 0, name, tuple(variants), face="sagemaker")

    def _fetch(self, url: str | None, folder: Path, image: str) -> tuple[Path, str, str, tuple[str, ...]]:
        """Download and unpack; return what to load, its sha256, the runtime and the code's requirements."""
        if not url:
            raise SageMakerError("ValidationException", "the model has no ModelDataUrl")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        download = folder / "model-data"
        scheme = url.split("://", 1)[0]
        try:
            if scheme == "file":
                source = Path(url[len("file://"):]).resolve()
                if not any(source.is_relative_to(root) for root in self.file_roots):
                    raise SageMakerError("ValidationException", f"{url} is outside the folders modelport may read "
                                         "(MODELPORT_SAGEMAKER_FILE_ROOTS)")
                shutil.copyfile(source, download)
            elif scheme == "https":
                with httpx.stream("GET", url, timeout=60, follow_redirects=True) as response:
                    response.raise_for_status()
                    with open(download, "wb") as out:
                        for chunk in response.iter_bytes():
                            out.write(chunk)
            else:
                import boto3

                bucket, _, key = url[len("s3://"):].partition("/")
                boto3.client("s3", endpoint_url=self.s3_endpoint_url).download_file(bucket, key, str(download))
        except SageMakerError:
            raise
        except Exception as exc:  # network, permissions, missing object: the endpoint fails with the reason
            raise SageMakerError("ValidationException", f"could not fetch the model data from {url}: {exc}") from None
        if download.stat().st_size > self.max_artifact_bytes:
            raise SageMakerError("ValidationException", f"the model data is larger than {self.max_artifact_bytes} bytes")
        sha = hashlib.sha256(download.read_bytes()).hexdigest()
        unpacked = folder / "model"
        if tarfile.is_tarfile(download):
            _extract_tar(download, unpacked, self.max_artifact_bytes * 4)
        elif _looks_like_an_archive(download, url):
            raise SageMakerError("ValidationException", f"the model data at {url} is a corrupt or truncated archive: "
                                 "it is named or starts like a tar.gz but cannot be read as one")
        else:
            unpacked.mkdir()
            shutil.move(str(download), unpacked / Path(url).name)
        code = unpacked / "code"
        if code.is_dir() and any(code.glob("*.py")):  # the inference toolkit contract: code/inference.py
            requirements_file = code / "requirements.txt"
            requirements = tuple(normalise(requirements_file.read_text())) if requirements_file.exists() else ()
            return unpacked, sha, "sagemaker-handler", requirements
        framework = framework_of(image)
        for pattern in MODEL_FILES[framework]:
            found = sorted(unpacked.rglob(pattern))
            if found:
                return found[0], sha, framework, ()
        raise SageMakerError("ValidationException", f"no {framework} model file in the model data (looked for "
                             f"{', '.join(MODEL_FILES[framework])})")

    async def provision(self, endpoint_id: int, *, updating: bool = False) -> None:
        """Creating/Updating -> InService once every variant's replicas are ready, or Failed with the reason."""
        try:
            spec = await run_in_threadpool(self.build_spec, endpoint_id)
        except SageMakerError as exc:
            await run_in_threadpool(self.set_status, endpoint_id, "InService" if updating and self._live(endpoint_id)
                                    else "Failed", exc.message)
            return
        await self.plane.apply(spec)
        live = self.plane.deployments.get(spec.key)
        if live is not None and live.status is DeploymentStatus.RUNNING and not live.error:
            await run_in_threadpool(self.set_status, endpoint_id, "InService")
        else:
            reasons = [live.error] if live and live.error else []
            reasons += [v.error for v in (live.variants if live else []) if v.error]
            await run_in_threadpool(self.set_status, endpoint_id, "InService" if updating and live else "Failed",
                                    "; ".join(reasons) or "the model did not become ready")

    def _live(self, endpoint_id: int) -> bool:
        return f"sagemaker:{endpoint_id}" in self.plane.deployments

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def endpoint_id(self, name: str) -> int:
        with self.db.session() as s:
            return self._endpoint(s, name).id

    def endpoints_to_restore(self) -> list[int]:
        with self.db.session() as s:
            return list(s.scalars(select(SageMakerEndpoint.id).where(
                SageMakerEndpoint.status.in_(("Creating", "Updating", "SystemUpdating", "InService")))))


def _required(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise validation(f"1 validation error detected: Value null at '{key[0].lower() + key[1:]}' failed to satisfy "
                         "constraint: Member must not be null")
    return value


def _name(request: dict[str, Any], key: str, pattern: re.Pattern[str], where: str = "") -> str:
    value = _required(request, key)
    field = where + key[0].lower() + key[1:]
    if len(value) > 63:
        raise validation(f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
                         "Member must have length less than or equal to 63")
    if not pattern.match(value):
        raise validation(f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
                         f"Member must satisfy regular expression pattern: {pattern.pattern}")
    return value


def _page(items: list[dict[str, Any]], request: dict[str, Any], name_key: str) -> tuple[list[dict[str, Any]], str | None]:
    """SortBy (Name | CreationTime | Status), SortOrder, NameContains, Creation/LastModified Before/After, MaxResults
    (1-100), NextToken (an offset)."""
    contains = request.get("NameContains")
    if contains:
        items = [i for i in items if str(contains).lower() in i[name_key].lower()]
    for key, field, after in (("CreationTimeAfter", "CreationTime", True), ("CreationTimeBefore", "CreationTime", False),
                              ("LastModifiedTimeAfter", "LastModifiedTime", True),
                              ("LastModifiedTimeBefore", "LastModifiedTime", False)):
        if key in request and field in (items[0] if items else {}):
            limit = _time(request[key], key)
            items = [i for i in items if (i[field] > limit if after else i[field] < limit)]
    sort_by = request.get("SortBy", "CreationTime")
    if sort_by not in ("Name", "CreationTime", "Status"):
        raise validation(f"SortBy must be Name, CreationTime or Status, got {sort_by!r}")
    order = request.get("SortOrder", "Descending")
    if order not in ("Ascending", "Descending"):
        raise validation(f"SortOrder must be Ascending or Descending, got {order!r}")
    key_of = {"Name": lambda i: i[name_key], "CreationTime": lambda i: i["CreationTime"],
              "Status": lambda i: i.get("EndpointStatus", "")}[sort_by]
    items.sort(key=key_of, reverse=order == "Descending")
    limit = request.get("MaxResults", 10 if "NextToken" in request else 100)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise validation("MaxResults must be between 1 and 100")
    token = request.get("NextToken")
    try:
        start = int(token) if token else 0
    except ValueError:
        raise validation("NextToken is not valid") from None
    page = items[start:start + limit]
    return page, (str(start + limit) if start + limit < len(items) else None)


def _listing(key: str, items: list[dict[str, Any]], request: dict[str, Any], name_key: str) -> dict[str, Any]:
    """A List* reply: one page of `items`, timestamps as epoch seconds, NextToken when more remain."""
    page, token = _page(items, request, name_key)
    page = [{k: (v.timestamp() if isinstance(v, datetime) else v) for k, v in item.items()} for item in page]
    return {key: page, **({"NextToken": token} if token else {})}


def _time(value: Any, key: str) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    raise validation(f"{key} must be a timestamp")


def _extract_tar(archive: Path, destination: Path, max_bytes: int) -> None:
    try:
        extract_tar(archive, destination, max_bytes, what="model.tar.gz")
    except InvalidInput as exc:
        message = exc.message.replace("is unreadable", "is corrupt or truncated")
        raise SageMakerError("ValidationException", message) from None


def _looks_like_an_archive(path: Path, url: str) -> bool:
    """A gzip or tar name or a gzip header: such data that tarfile cannot read is a broken archive, not a bare
    model file."""
    with open(path, "rb") as f:
        magic = f.read(2)
    name = url.rsplit("/", 1)[-1].lower()
    return magic == b"\x1f\x8b" or name.endswith((".tar.gz", ".tgz", ".tar"))
