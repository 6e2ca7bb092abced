"""SigV4 authentication against modelport-issued access keys, in two steps so that no body is read for a request
that is not signed with a known key: the headers first (`authenticate_headers`), the body's hash once it is in
(`authenticate_body`)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from modelport.api.sagemaker.sigv4 import Credential, SignatureError, parse_authorization, verify, verify_headers
from modelport.services.access import act_as
from modelport.services.sagemaker import SageMakerError


@dataclass(frozen=True, slots=True)
class Signed:
    """A request whose headers passed: its credential, the key's secret, and whether the signature itself was
    verified already (it was when `x-amz-content-sha256` gave the payload hash)."""

    credential: Credential
    secret: str
    signature_checked: bool
    principal: Any  # who the key acts as: its user in its workspace (services/access.py)


async def authenticate_headers(platform: Any, *, method: str, path: str, query: str, headers: dict[str, str]
                               ) -> Signed:
    """Before the body is read: a signature is there, made with a key modelport issued, dated now, over headers
    the request has; and when `x-amz-content-sha256` gives the payload hash, the signature holds. (Without that
    header the signature covers a hash of the body, so it is checked once the body is in.) SageMakerError 401
    without credentials, 403 if the signature does not hold."""
    header = headers.get("authorization")
    if not header:
        raise SageMakerError("MissingAuthenticationTokenException", "Missing Authentication Token", 401)
    try:
        credential = parse_authorization(header)
        service = platform.sagemaker
        secret = service.cached_secret(credential.access_key) or await run_in_threadpool(
            service.secret_for, credential.access_key)
        payload_hash = headers.get("x-amz-content-sha256")
        verify_headers(method=method, path=path, query=query, headers=headers, credential=credential, secret=secret,
                       payload_hash=payload_hash)
    except SignatureError as exc:
        raise SageMakerError(exc.code, exc.message, 403) from None
    return Signed(credential, secret, payload_hash is not None, service.principal_of(credential.access_key))


def authenticate_body(signed: Signed, *, method: str, path: str, query: str, headers: dict[str, str],
                      body: bytes) -> str:
    """The rest of the check once the body is in; the request's region (from its credential scope)."""
    try:
        if signed.signature_checked:
            declared = headers["x-amz-content-sha256"]
            if declared != "UNSIGNED-PAYLOAD" and not hmac.compare_digest(declared,
                                                                          hashlib.sha256(body).hexdigest()):
                raise SignatureError("InvalidSignatureException", "the body does not match x-amz-content-sha256")
        else:
            verify(method=method, path=path, query=query, headers=headers, body=body, credential=signed.credential,
                   secret=signed.secret)
    except SignatureError as exc:
        raise SageMakerError(exc.code, exc.message, 403) from None
    act_as(signed.principal)  # only once the whole signature holds
    return signed.credential.region


async def authenticate(platform: Any, *, method: str, path: str, query: str, headers: dict[str, str],
                       body: bytes) -> str:
    """Both steps at once, for a body already read (its headers were checked before it was: `api/gate.py`)."""
    signed = await authenticate_headers(platform, method=method, path=path, query=query, headers=headers)
    return authenticate_body(signed, method=method, path=path, query=query, headers=headers, body=body)
