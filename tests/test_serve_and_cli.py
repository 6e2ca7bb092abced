"""`modelport serve` and `modelport token` as a user runs them."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time

import httpx
import pytest

from tests.support import Server, free_port

pytestmark = pytest.mark.database


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelport.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_first_start_prints_url_and_admin_token_and_stores_it_privately(tmp_path, fresh_database_url) -> None:
    port = free_port()
    home = tmp_path / "home"
    env = {**os.environ, "MODELPORT_HOME": str(home)}
    env.pop("MODELPORT_ADMIN_TOKEN", None)
    args = [sys.executable, "-m", "modelport.cli", "serve", "--port", str(port)]
    if fresh_database_url:
        args += ["--database-url", fresh_database_url]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = ""
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while "admin token" not in output and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output += line
        assert f"http://127.0.0.1:{port}" in output, output
        token = re.search(r"(mp_[A-Za-z0-9_-]{20,})", output).group(1)
        token_file = home / "admin-token"
        assert token_file.read_text().strip() == token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/api/workspaces/list", json={},
                           headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        remaining, _ = process.communicate(timeout=20)
    # A clean shutdown: lifespan completed; uvicorn then re-raises SIGTERM (exit by that signal), as POSIX servers do.
    assert process.returncode in (0, -signal.SIGTERM), remaining
    assert "Application shutdown complete" in remaining and "Traceback" not in remaining


def test_preset_admin_token_flags_override_env_and_size_limit(tmp_path, fresh_database_url) -> None:
    """MODELPORT_ADMIN_TOKEN sets the first admin token; an upload over MODELPORT_MAX_UPLOAD_BYTES is a 413."""
    srv = Server(tmp_path / "home", database_url=fresh_database_url, env={"MODELPORT_MAX_UPLOAD_BYTES": "2000"}).start()
    try:
        assert (srv.home / "admin-token").read_text().strip() == srv.token
        ws = srv.post("/v1/api/workspaces/create", {"workspace_name": "limits"}).json()["workspace_id"]
        files = {"metadata": (None, '{"name": "big", "workspace_id": %d}' % ws, "application/json"),
                 "file": ("big.onnx", b"x" * 5000, "application/octet-stream")}
        reply = httpx.post(f"{srv.url}/v1/api/models/upload_and_convert", files=files, headers=srv.headers)
        assert reply.status_code == 413 and "msg" in reply.json()
        assert srv.post("/v1/api/models/list", {}).json()["models"] == []
        # the inference routes, answered outside FastAPI, keep the same limit, with or without a Content-Length
        for content in (b"x" * 5000, iter([b"x" * 1500] * 3)):
            reply = httpx.post(f"{srv.url}/v2/models/any/infer", content=content, headers=srv.headers)
            assert reply.status_code == 413 and "error" in reply.json(), reply.text
    finally:
        srv.stop()


def test_token_cli_creates_lists_and_revokes(tmp_path, fresh_database_url) -> None:
    srv = Server(tmp_path / "home", database_url=fresh_database_url).start()
    env = {"MODELPORT_HOME": str(srv.home)}
    if fresh_database_url:
        env["MODELPORT_DATABASE_URL"] = fresh_database_url
    try:
        created = run_cli("token", "create", "pipeline-bot", env=env)
        assert created.returncode == 0, created.stderr
        token = re.search(r"token: (\S+)", created.stdout).group(1)
        token_id = re.search(r"id:\s+(\S+)", created.stdout).group(1)
        user = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{srv.url}/v1/api/workspaces/list", json={}, headers=user).status_code == 200

        listed = run_cli("token", "list", env=env)
        assert listed.returncode == 0 and "pipeline-bot" in listed.stdout and token not in listed.stdout

        revoked = run_cli("token", "revoke", token_id, env=env)
        assert revoked.returncode == 0, revoked.stderr
        # revoked in another process: the server's verified-token cache (5 s) lets it lapse within that time
        deadline = time.monotonic() + 6
        while httpx.post(f"{srv.url}/v1/api/workspaces/list", json={}, headers=user).status_code != 401:
            assert time.monotonic() < deadline, "the revoked token still works after the cache time"
            time.sleep(0.2)
        assert run_cli("token", "revoke", "no-such-id", env=env).returncode == 1
    finally:
        srv.stop()


def test_a_second_server_on_one_sqlite_database_refuses_to_start(tmp_path) -> None:
    """SQLite is the one-server default: a second server on the same file (same home or not) says so and stops,
    and the first one serves on, untouched."""
    database = f"sqlite:///{tmp_path / 'one.db'}"
    first = Server(tmp_path / "first", database_url=database).start()
    try:
        for home in (first.home, tmp_path / "second"):
            result = run_cli("serve", "--port", str(free_port()), "--home", str(home), "--database-url", database,
                             env={"MODELPORT_ADMIN_TOKEN": first.token})
            assert result.returncode == 1, result.stdout + result.stderr
            assert "another modelport server already serves the SQLite database" in result.stdout
            assert "Traceback" not in result.stdout + result.stderr
        assert first.post("/v1/api/workspaces/list", {}).status_code == 200
    finally:
        first.stop()
    restarted = Server(tmp_path / "first", database_url=database).start()  # the lock ends with its server
    restarted.stop()
