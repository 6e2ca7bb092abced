"""SigV4 authentication against modelport-issued access keys."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from modelport.api.sagemaker.sigv4 import SignatureError, parse_authorization, verify
from modelport.services.sagemaker import SageMakerError


async def authenticate(platform: Any, *, method: str, path: str, query: str, headers: dict[str, str],
                       body: bytes) -> str:
    """The request's region (from its credential scope); SageMakerError 401 without credentials, 403 if the
    signature does not hold."""
    header = headers.get("authorization")
    if not header:
        raise SageMakerError("MissingAuthenticationTokenException", "Missing Authentication Token", 401)
    try:
        credential = parse_authorization(header)
        service = platform.sagemaker
        secret = service.cached_secret(credential.access_key) or await run_in_threadpool(
            service.secret_for, credential.access_key)
        verify(method=method, path=path, query=query, headers=headers, body=body, credential=credential, secret=secret)
    except SignatureError as exc:
        raise SageMakerError(exc.code, exc.message, 403) from None
    return credential.region
