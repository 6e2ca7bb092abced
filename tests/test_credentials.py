"""One credential model (issue 18 item 7) and server-side console sessions (item 8): every kind of credential is
listed (never its secret) and revoked, over HTTP and the CLI, effective at once; logout, revocation, user removal
and expiry end a console session."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from tests.support import Server

pytestmark = pytest.mark.database  # new tables and migration 0008: run again on PostgreSQL by .ci/run

CREDENTIALS = "/modelport/v1/credentials"


def cli(server: Server, *args: str) -> str:
    env = {**os.environ, "MODELPORT_HOME": str(server.home)}
    if server.database_url:
        env["MODELPORT_DATABASE_URL"] = server.database_url
    done = subprocess.run([sys.executable, "-m", "modelport.cli", *args], env={**env, "COLUMNS": "250"},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def create(server: Server, **body) -> dict:
    reply = httpx.post(server.url + CREDENTIALS, headers=server.headers, json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()


def listed(server: Server, token: str | None = None) -> httpx.Response:
    return httpx.get(server.url + CREDENTIALS, headers={"Authorization": f"Bearer {token or server.token}"})


def sagemaker(server: Server, key: dict):
    return boto3.client("sagemaker", endpoint_url=server.url, region_name="eu-west-1",
                        aws_access_key_id=key["aws_access_key_id"], aws_secret_access_key=key["aws_secret_access_key"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_kind_is_listed_without_its_secret_and_revoked_at_once(server: Server) -> None:
    user = create(server, name="ci-user", kind="user", user=None)
    key = create(server, name="ci-aws", kind="aws")
    dataiku = httpx.post(f"{server.url}/modelport/v1/tokens", headers=server.headers,
                         json={"name": "predict-key", "kind": "service"}).json()
    secrets = [user["token"], key["aws_secret_access_key"], dataiku["token"], server.token]

    # use two of them, so they show as used
    assert httpx.post(f"{server.url}/v1/api/workspaces/list", headers=bearer(user["token"]), json={}).status_code == 200
    assert "Models" in sagemaker(server, key).list_models()

    reply = listed(server)
    assert reply.status_code == 200
    for secret in secrets:
        assert secret not in reply.text
    items = {c["id"]: c for c in reply.json()["credentials"]}
    assert {"admin", "user", "dataiku", "aws"} <= {c["kind"] for c in items.values()}
    assert items[user["id"]]["owner"] == "ci-user" and items[user["id"]]["last_used_at"] is not None
    assert items[key["id"]]["kind"] == "aws" and items[key["id"]]["last_used_at"] is not None
    assert set(items[key["id"]]) == {"id", "kind", "name", "owner", "workspace_id", "created_at", "last_used_at",
                                     "revoked_at", "revoked"}

    # a user sees their own credentials only, and cannot create any
    mine = listed(server, user["token"]).json()["credentials"]
    assert [c["id"] for c in mine] == [user["id"]]
    assert httpx.post(server.url + CREDENTIALS, headers=bearer(user["token"]),
                      json={"name": "x", "kind": "aws"}).status_code == 403

    # revoked: refused from the next request on
    revoked = httpx.delete(f"{server.url}{CREDENTIALS}/{key['id']}", headers=server.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    with pytest.raises(ClientError) as refused:
        sagemaker(server, key).list_models()
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert httpx.delete(f"{server.url}{CREDENTIALS}/{user['id']}", headers=bearer(user["token"])).status_code == 200
    assert httpx.post(f"{server.url}/v1/api/workspaces/list", headers=bearer(user["token"]),
                      json={}).status_code == 401
    assert httpx.delete(f"{server.url}{CREDENTIALS}/nope", headers=server.headers).status_code == 404
    kinds = {c["id"]: c for c in listed(server).json()["credentials"]}
    assert kinds[key["id"]]["revoked_at"] is not None and kinds[user["id"]]["revoked_at"] is not None


def test_the_cli_lists_and_revokes_aws_key_pairs_too(server: Server) -> None:
    out = cli(server, "token", "create", "cli-aws", "--aws")
    key_id = out.split("aws_access_key_id:", 1)[1].split()[0]
    secret = out.split("aws_secret_access_key:", 1)[1].split()[0]
    table = cli(server, "token", "list")
    assert key_id in table and "aws" in table and secret not in table
    assert f"revoked aws {key_id}" in cli(server, "token", "revoke", key_id)
    # the CLI wrote to the database; the server's key cache lets it through for at most 5 s
    deadline = time.monotonic() + 10
    while True:
        try:
            sagemaker(server, {"aws_access_key_id": key_id, "aws_secret_access_key": secret}).list_models()
        except ClientError as exc:
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert key_id in cli(server, "token", "list", "--kind", "aws")


# -- console sessions -------------------------------------------------------------------------------------------------

@contextmanager
def sign_in(server: Server, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url) as session:
        assert session.post("/ui/login", data={"token": token}).status_code == 303
        assert session.get("/ui/models").status_code == 200
        yield session


def signed_in(server: Server, cookie: str) -> bool:
    reply = httpx.get(server.url + "/ui/models", cookies={"modelport_session": cookie})
    return reply.status_code == 200


def test_logout_revocation_and_user_removal_end_the_session(server: Server) -> None:
    with sign_in(server, server.token) as session:
        cookie = session.cookies["modelport_session"]
        page = session.get("/ui/models").text
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        assert session.post("/ui/logout", data={"csrf": csrf}).status_code == 303
    assert not signed_in(server, cookie)  # a copy of the cookie kept from before the logout is dead too

    user = create(server, name="revoked-user", kind="user")
    with sign_in(server, user["token"]) as session:
        cookie = session.cookies["modelport_session"]
        assert httpx.delete(f"{server.url}{CREDENTIALS}/{user['id']}", headers=server.headers).status_code == 200
        assert not signed_in(server, cookie)

    assert httpx.post(f"{server.url}/modelport/v1/users", headers=server.headers,
                      json={"email": "leaver@example.com"}).status_code == 201
    token = create(server, name="leaver", kind="user", user="leaver@example.com")
    with sign_in(server, token["token"]) as session:
        cookie = session.cookies["modelport_session"]
        assert httpx.delete(f"{server.url}/modelport/v1/users/leaver@example.com",
                            headers=server.headers).status_code == 200
        assert not signed_in(server, cookie)
    assert httpx.post(f"{server.url}/v1/api/workspaces/list", headers=bearer(token["token"]), json={}).status_code == 401
    users = httpx.get(f"{server.url}/modelport/v1/users", headers=server.headers).json()["users"]
    assert "leaver@example.com" not in [u["email"] for u in users]


def test_a_session_expires(tmp_path) -> None:
    server = Server(tmp_path / "home", env={"MODELPORT_SESSION_TTL_S": "1"}).start()
    try:
        with sign_in(server, server.token) as session:
            cookie = session.cookies["modelport_session"]
        deadline = time.monotonic() + 10
        while signed_in(server, cookie):
            assert time.monotonic() < deadline, "the session did not expire"
            time.sleep(0.2)
    finally:
        server.stop()


def test_user_tokens_of_an_earlier_version_get_a_user_each(tmp_path, fresh_database_url) -> None:
    """Migration 0008: every non-admin token belongs to a user, so each existing user token gets one."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    from modelport.store.database import MIGRATIONS

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    url = fresh_database_url or f"sqlite:///{home / 'modelport.db'}"
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
        connection.execute(text("INSERT INTO api_tokens (id, name, token_hash, kind, created_at) VALUES "
                                "('00000000-0000-0000-0000-000000000001', 'old-bot', :hash, 'user', CURRENT_TIMESTAMP)"),
                           {"hash": "0" * 64})
    engine.dispose()
    server = Server(home, database_url=fresh_database_url).start()
    try:
        users = httpx.get(f"{server.url}/modelport/v1/users", headers=server.headers).json()["users"]
        assert [u["email"] for u in users] == ["old-bot"]
        items = {c["id"]: c for c in listed(server).json()["credentials"]}
        assert items["00000000-0000-0000-0000-000000000001"]["owner"] == "old-bot"
    finally:
        server.stop()
