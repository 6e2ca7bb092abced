"""Secrets at rest (issue 18 item 6): AWS secret keys, Craft AI environment variable values and task arguments are
sealed in the database, the home is 0700 and the SQLite file 0600, a secret is never shown again once set, and rows
an earlier version stored in plain text are sealed at the next start."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time

import boto3
import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support import Server
from tests.test_jobs import ready_orchestration

pytestmark = pytest.mark.database  # new tables, sealed columns and migration 0008: run again on PostgreSQL

SECRET_ARGUMENT = "hunter2-the-task-password"
SECRET_VALUE = "s3cr3t-environment-value"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def database(server: Server):
    return create_engine(server.database_url or f"sqlite:///{server.home / 'modelport.db'}")


def dump(server: Server) -> str:
    """Every secret-bearing column, as stored."""
    engine = database(server)
    with engine.connect() as c:
        rows = [*c.execute(text("SELECT secret FROM aws_access_keys")),
                *c.execute(text("SELECT value FROM craft_environment_variables")),
                *c.execute(text("SELECT arguments FROM tasks"))]
    engine.dispose()
    return "\n".join(str(r[0]) for r in rows)


def cli(server: Server, *args: str) -> str:
    env = {**os.environ, "MODELPORT_HOME": str(server.home)}
    if server.database_url:
        env["MODELPORT_DATABASE_URL"] = server.database_url
    return subprocess.run([sys.executable, "-m", "modelport.cli", *args], env=env, capture_output=True, text=True,
                          check=True).stdout


def aws_key(server: Server) -> tuple[str, str]:
    out = cli(server, "token", "create", "secrets-test", "--aws")
    return (re.search(r"aws_access_key_id:\s+(\S+)", out).group(1),
            re.search(r"aws_secret_access_key:\s+(\S+)", out).group(1))


def list_models(server: Server, key: tuple[str, str]) -> dict:
    client = boto3.client("sagemaker", endpoint_url=server.url, region_name="eu-west-1", aws_access_key_id=key[0],
                          aws_secret_access_key=key[1])
    return client.list_models()


def test_home_database_and_key_file_are_private(server: Server) -> None:
    assert mode(server.home) == 0o700
    assert mode(server.home / "secret.key") == 0o600
    if not server.database_url:
        assert mode(server.home / "modelport.db") == 0o600


def test_secrets_are_sealed_at_rest_and_never_shown_again(server: Server) -> None:
    key = aws_key(server)
    assert "Models" in list_models(server, key)  # SigV4 verification opens the sealed secret

    variables = f"{server.url}/api/v1/environment-variables"
    reply = httpx.put(variables, headers=server.headers, json={"environment_variables": {"DB_PASSWORD": SECRET_VALUE}})
    assert reply.status_code == 204, reply.text
    listed = httpx.get(variables, headers=server.headers).json()
    assert [v["name"] for v in listed] == ["DB_PASSWORD"] and SECRET_VALUE not in str(listed)

    workspace = server.post("/v1/api/workspaces/create", {"workspace_name": "secrets"}).json()["workspace_id"]
    orchestration = ready_orchestration(server, workspace, {
        "main.py": b"import modelport\nprint('argument:', modelport.task_args()['password'])\n"})
    task = server.post("/v1/api/task/run_once", {"workspace_id": workspace, "orch_id": orchestration["id"],
                                                 "json": {"password": SECRET_ARGUMENT}}).json()["id"]
    # the members of the workspace see the arguments they gave; the run gets them in plain text
    assert server.post("/v1/api/task/get_by_id", {"id": task}).json()["input_data"] == {"password": SECRET_ARGUMENT}
    deadline = time.monotonic() + 120
    while True:
        runs = server.post("/v1/api/task/list_task_runs", {"task_id": task}).json()
        if runs and runs[0]["status"] in ("success", "failure"):
            break
        assert time.monotonic() < deadline, runs
        time.sleep(0.2)
    logs = server.post("/v1/api/task/get_logs_for_run", {"id": runs[0]["run_id"]}).json()["logs"]
    assert any(f"argument: {SECRET_ARGUMENT}" in line for line in logs), logs

    stored = dump(server)
    for secret in (key[1], SECRET_VALUE, SECRET_ARGUMENT):
        assert secret not in stored
    assert stored.count("mpenc1:") == 3


def test_plain_rows_of_an_earlier_version_are_sealed_at_start(server: Server) -> None:
    server.stop()
    engine = database(server)
    with engine.begin() as c:
        c.execute(text("INSERT INTO aws_access_keys (access_key_id, secret, name, created_at) "
                       "VALUES ('AKMPPLAINOLDKEY0', 'plain-old-secret-0123456789', 'old', CURRENT_TIMESTAMP)"))
        c.execute(text("INSERT INTO craft_environment_variables (name, value) VALUES ('OLD', 'plain-old-value')"))
        c.execute(text("UPDATE tasks SET arguments = '{\"password\": \"plain-old-argument\"}'"))
    engine.dispose()
    server.start()
    stored = dump(server)
    for secret in ("plain-old-secret-0123456789", "plain-old-value", "plain-old-argument"):
        assert secret not in stored
    assert "Models" in list_models(server, ("AKMPPLAINOLDKEY0", "plain-old-secret-0123456789"))
    spaces = server.post("/v1/api/workspaces/list", {}).json()["workspaces"]
    workspace = next(w["id"] for w in spaces if w["name"] == "secrets")
    tasks = server.post("/v1/api/task/list", {"workspace_id": workspace}).json()
    assert tasks and tasks[0]["input_data"] == {"password": "plain-old-argument"}


def test_an_explicit_key_is_used_and_a_wrong_one_is_refused_clearly(tmp_path) -> None:
    home = tmp_path / "home"
    shared = "a-passphrase-shared-by-every-server-0123456789"
    server = Server(home, env={"MODELPORT_SECRET_KEY": shared}).start()
    try:
        variables = f"{server.url}/api/v1/environment-variables"
        assert httpx.put(variables, headers=server.headers,
                         json={"environment_variables": {"X": "y"}}).status_code == 204
        assert not (home / "secret.key").exists()
        assert "mpenc1:" in dump(server)
    finally:
        server.stop()


@pytest.mark.parametrize("value", ["short"])
def test_a_short_passphrase_is_refused_at_start(tmp_path, value: str) -> None:
    with pytest.raises(RuntimeError, match="MODELPORT_SECRET_KEY"):
        Server(tmp_path / "home", env={"MODELPORT_SECRET_KEY": value}).start(timeout=180)  # it exits at once
