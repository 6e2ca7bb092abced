"""SigV4 verification agrees with botocore's own signer."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from modelport.api.sagemaker import sigv4


def signed(url: str, body: bytes, secret: str = "SECRET") -> tuple[dict[str, str], str, str]:
    request = AWSRequest(method="POST", url=url, data=body,
                         headers={"X-Amz-Target": "SageMaker.CreateModel", "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials("AKID", secret), "sagemaker", "eu-west-1").add_auth(request)
    parts = urlsplit(request.url)
    return {k.lower(): v for k, v in request.headers.items()} | {"host": parts.netloc}, parts.path, parts.query


@pytest.mark.parametrize("url, body", [
    ("http://127.0.0.1:8080/", json.dumps({"ModelName": "m"}).encode()),
    ("http://127.0.0.1:8080/prefix/path?b=2&a=1%20x", b""),
    ("http://127.0.0.1:8080/endpoints/my-ep/invocations", b"1,2,3\n"),
])
def test_botocore_signatures_verify_and_tampering_does_not(url: str, body: bytes) -> None:
    headers, path, query = signed(url, body)
    credential = sigv4.parse_authorization(headers["authorization"])
    assert (credential.access_key, credential.region, credential.service) == ("AKID", "eu-west-1", "sagemaker")
    sigv4.verify(method="POST", path=path, query=query, headers=headers, body=body, credential=credential,
                 secret="SECRET")
    for change in ({"secret": "WRONG"}, {"body": body + b"x"}, {"path": path + "x"}):
        with pytest.raises(sigv4.SignatureError) as error:
            sigv4.verify(**{"method": "POST", "path": path, "query": query, "headers": headers, "body": body,
                            "credential": credential, "secret": "SECRET", **change})
        assert error.value.code == "InvalidSignatureException"
    with pytest.raises(sigv4.SignatureError, match="expired"):
        sigv4.verify(method="POST", path=path, query=query, headers=headers, body=body, credential=credential,
                     secret="SECRET", now=datetime.now(timezone.utc) + timedelta(minutes=20))


def test_malformed_authorization_headers() -> None:
    for header in ("Bearer x", "AWS4-HMAC-SHA256 Credential=a/b", "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, Signature=x"):
        with pytest.raises(sigv4.SignatureError) as error:
            sigv4.parse_authorization(header)
        assert error.value.code == "IncompleteSignatureException"
