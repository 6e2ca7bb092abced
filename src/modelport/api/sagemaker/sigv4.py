"""AWS Signature Version 4 verification, for requests signed by boto3 / botocore with keys modelport issued.

Follows the published algorithm: canonical request -> string to sign -> signing key (date, region, service) ->
HMAC-SHA256, compared in constant time. Clock skew beyond 15 minutes is refused, as AWS does.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, quote

from modelport.domain.errors import ModelportError


class SignatureError(ModelportError):
    status = 403

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Credential:
    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(header: str) -> Credential:
    if not header.startswith("AWS4-HMAC-SHA256 "):
        raise SignatureError("IncompleteSignatureException", "Authorization header requires AWS4-HMAC-SHA256 signing")
    fields = {}
    for part in header[len("AWS4-HMAC-SHA256 "):].split(","):
        key, _, value = part.strip().partition("=")
        fields[key] = value
    try:
        access_key, date, region, service, terminal = fields["Credential"].split("/")
        signed_headers = tuple(fields["SignedHeaders"].split(";"))
        signature = fields["Signature"]
    except (KeyError, ValueError):
        raise SignatureError("IncompleteSignatureException",
                             "Authorization header requires Credential, SignedHeaders and Signature") from None
    if terminal != "aws4_request":
        raise SignatureError("IncompleteSignatureException", "credential scope must end with aws4_request")
    return Credential(access_key, date, region, service, signed_headers, signature)


def _canonical_uri(path: str) -> str:
    return quote(path or "/", safe="/~")


def _canonical_query(query: str) -> str:
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{k}={v}" for k, v in pairs)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def verify(*, method: str, path: str, query: str, headers: dict[str, str], body: bytes, credential: Credential,
           secret: str, now: datetime | None = None) -> None:
    """Raise SignatureError unless the request carries a valid signature made with `secret`."""
    actual = hashlib.sha256(body).hexdigest()
    payload_hash = headers.get("x-amz-content-sha256") or actual
    if payload_hash != "UNSIGNED-PAYLOAD" and payload_hash != actual:
        raise SignatureError("InvalidSignatureException", "the body does not match x-amz-content-sha256")
    verify_headers(method=method, path=path, query=query, headers=headers, credential=credential, secret=secret,
                   payload_hash=payload_hash, now=now)


def verify_headers(*, method: str, path: str, query: str, headers: dict[str, str], credential: Credential,
                   secret: str, payload_hash: str | None, now: datetime | None = None) -> None:
    """Everything that can be checked before the body is read: the date, the signed headers and, when the payload
    hash is known without the body (`x-amz-content-sha256`), the signature itself. With `payload_hash` None only
    the first two are checked; the signature then waits for the body's hash (`verify`)."""
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise SignatureError("IncompleteSignatureException", "X-Amz-Date is missing or malformed") from None
    now = now or datetime.now(timezone.utc)
    if abs(now - signed_at) > timedelta(minutes=15):
        raise SignatureError("InvalidSignatureException", "Signature expired: the request time is more than "
                             "15 minutes away from the server time")
    if not amz_date.startswith(credential.date):
        raise SignatureError("InvalidSignatureException", "the credential date does not match X-Amz-Date")
    canonical_headers = ""
    for name in credential.signed_headers:
        if name not in headers:
            raise SignatureError("InvalidSignatureException", f"signed header {name!r} is missing from the request")
        canonical_headers += f"{name}:{' '.join(headers[name].strip().split())}\n"
    if payload_hash is None:
        return
    canonical_request = "\n".join([method, _canonical_uri(path), _canonical_query(query), canonical_headers,
                                   ";".join(credential.signed_headers), payload_hash])
    scope = f"{credential.date}/{credential.region}/{credential.service}/aws4_request"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    expected = hmac.new(signing_key(secret, credential.date, credential.region, credential.service),
                        string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, credential.signature):
        raise SignatureError("InvalidSignatureException", "The request signature we calculated does not match the "
                             "signature you provided. Check your AWS Secret Access Key and signing method.")
