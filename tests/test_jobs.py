"""Orchestrations, tasks and task runs against a real server: real processes, real schedules."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.support import (
    SEED_DENSE_INPUT, Server, build_ccfraud_onnx, create_pipeline, upload_model,
)

pytestmark = pytest.mark.database

SEED_MAIN = b'''
import modelport

# get the arguments
wl = modelport.Client()
# if true, get the arguments passed to the task
if wl.in_task():
    arguments = wl.task_args()
    # arguments is a key/value pair, set the workspace and pipeline name
    workspace_name = arguments['workspace_name']
    pipeline_name = arguments['pipeline_name']
# False: We're not in a Task, so set the pipeline manually
else:
    workspace_name = "bigqueryworkspace"
    pipeline_name = "bigquerypipeline"
print(arguments)
print(f"Getting the workspace {workspace_name}")
print(f"Getting the pipeline {pipeline_name}")
'''


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"MODELPORT_ALLOW_SECOND_SCHEDULES": "1", "MODELPORT_KILL_GRACE_S": "1",
            "MODELPORT_MAX_ARCHIVE_ENTRIES": "50", "MODELPORT_MAX_UPLOAD_BYTES": str(8 * 1024 * 1024)}


@pytest.fixture(scope="module")
def workspace(server: Server) -> int:
    return server.post("/v1/api/workspaces/create", {"workspace_name": "jobs"}).json()["workspace_id"]


def make_zip(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def upload(server: Server, workspace: int, archive: bytes, name: str = "orch") -> httpx.Response:
    return httpx.post(f"{server.url}/v1/api/orchestration/upload", headers=server.headers, timeout=60, files=[
        ("file", ("orchestration.zip", archive, "application/octet-stream")),
        ("metadata", ("metadata", json.dumps({"workspace_id": workspace, "name": name}), "application/json"))])


def ready_orchestration(server: Server, workspace: int, entries: dict[str, bytes], timeout: float = 180) -> dict:
    reply = upload(server, workspace, make_zip(entries))
    assert reply.status_code == 202, reply.text
    orch_id = reply.json()["id"]
    deadline = time.monotonic() + timeout
    while True:
        listed = server.post("/v1/api/orchestration/list", {"workspace_id": workspace}).json()
        orchestration = next(o for o in listed if o["id"] == orch_id)
        if orchestration["status"] in ("ready", "error"):
            assert orchestration["status"] == "ready", orchestration
            return orchestration
        assert time.monotonic() < deadline, orchestration
        time.sleep(0.1)


def wait_task(server: Server, task_id: str, statuses: tuple[str, ...], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        task = server.post("/v1/api/task/get_by_id", {"id": task_id}).json()
        if task["status"] in statuses:
            return task
        assert time.monotonic() < deadline, task
        time.sleep(0.1)


def runs_of(server: Server, task_id: str, **filters) -> list[dict]:
    reply = server.post("/v1/api/task/list_task_runs", {"task_id": task_id, **filters})
    assert reply.status_code == 200, reply.text
    return reply.json()


def process_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_seed_sample_runs_once_and_its_lines_are_in_the_logs(server: Server, workspace: int) -> None:
    orchestration = ready_orchestration(server, workspace, {"main.py": SEED_MAIN})
    assert len(orchestration["sha"]) == 64 and orchestration["file_name"] == "orchestration.zip"
    # the seed's request, as written
    data = {"workspace_id": workspace, "orch_id": orchestration["id"],
            "json": {"workspace_name": "jobs", "pipeline_name": "ppl"}}
    task_id = requests_post(server, "/v1/api/task/run_once", data)["id"]
    task = wait_task(server, task_id, ("success", "failed"))
    assert task["status"] == "success", task
    assert task["last_runs"] and task["last_runs"][0]["status"] == "success"
    run = runs_of(server, task_id)[0]
    assert run["task"] == task_id and run["status"] == "success"
    logs = server.post("/v1/api/task/get_logs_for_run", {"id": run["run_id"]}).json()["logs"]
    assert any(line.endswith("stdout F {'workspace_name': 'jobs', 'pipeline_name': 'ppl'}") for line in logs), logs
    assert any(line.endswith("stdout F Getting the pipeline ppl") for line in logs)
    import re

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z stdout F .*", logs[0])
    assert server.post("/v1/api/task/get_logs_for_run", {"id": run["run_id"], "lines": 1}).json()["logs"] == logs[-1:]
    ids = server.post("/v1/api/task/get_tasks_by_orch_sha", {"sha": orchestration["sha"]}).json()["ids"]
    assert task_id in ids
    listed = server.post("/v1/api/task/list", {"workspace_id": workspace}).json()
    assert any(t["id"] == task_id for t in listed)
    every = server.post("/v1/api/orchestration/list_all", {"task_run_status": [], "workspace_ids": [workspace]}).json()
    assert any(o["orchestration"]["id"] == orchestration["id"] and o["tasks"] for o in every["orchestrations"])


def requests_post(server: Server, path: str, data: dict) -> dict:
    import requests

    reply = requests.post(f"{server.url}{path}", headers=server.headers, json=data)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_requirements_are_installed_and_shared(server: Server, workspace: int) -> None:
    script = b"import humanize\nprint(humanize.intcomma(1234567))\n"
    first = ready_orchestration(server, workspace, {"main.py": script, "requirements.txt": b"humanize>=4\n"})
    second = ready_orchestration(server, workspace, {"job/main.py": script, "job/requirements.txt": b"humanize>=4\n"})
    assert first["entrypoint"] == "main.py" and second["entrypoint"] == "job/main.py"
    for orchestration in (first, second):
        task_id = server.post("/v1/api/task/run_once", {"workspace_id": workspace, "orch_id": orchestration["id"],
                                                        "json": {}}).json()["id"]
        assert wait_task(server, task_id, ("success", "failed"))["status"] == "success"
        run = runs_of(server, task_id)[0]
        assert server.post("/v1/api/task/get_logs_for_run", {"id": run["run_id"]}).json()["logs"][-1].endswith(
            "stdout F 1,234,567")
    environments = [p for p in (server.home / "envs").iterdir() if (p / ".ready").exists()
                    and "humanize" in (p / ".ready").read_text()]
    assert len(environments) == 1


def test_run_once_timeout_leaves_no_process(server: Server, workspace: int) -> None:
    script = (b"import subprocess, time\n"
              b"child = subprocess.Popen(['sleep', '120'])\n"
              b"print('child', child.pid, flush=True)\n"
              b"time.sleep(120)\n")
    orchestration = ready_orchestration(server, workspace, {"main.py": script})
    task_id = server.post("/v1/api/task/run_once", {"workspace_id": workspace, "orch_id": orchestration["id"],
                                                    "json": {}, "timeout": 2}).json()["id"]
    task = wait_task(server, task_id, ("timed_out", "failed", "success"), timeout=60)
    assert task["status"] == "timed_out", task
    run = runs_of(server, task_id)[0]
    assert run["status"] == "timed_out"
    logs = server.post("/v1/api/task/get_logs_for_run", {"id": run["run_id"]}).json()["logs"]
    child = int(logs[0].rsplit(" ", 1)[1])
    deadline = time.monotonic() + 10
    while process_alive(child):
        assert time.monotonic() < deadline, "the run's child process survived the timeout"
        time.sleep(0.1)


def test_scheduled_task_fires_on_schedule_and_kill_stops_everything(server: Server, workspace: int) -> None:
    script = b"import os, time\nprint('pid', os.getpid(), flush=True)\ntime.sleep(60)\n"
    orchestration = ready_orchestration(server, workspace, {"main.py": script})
    task_id = server.post("/v1/api/task/run_scheduled", {
        "workspace_id": workspace, "orch_id": orchestration["id"], "json": {}, "name": "every-2s",
        "schedule": "* * * * * */2"}).json()["id"]
    deadline = time.monotonic() + 30
    while len(runs_of(server, task_id)) < 3:
        assert time.monotonic() < deadline, runs_of(server, task_id)
        time.sleep(0.1)
    runs = runs_of(server, task_id)
    created = sorted(time.mktime(time.strptime(r["created_at"][:19], "%Y-%m-%dT%H:%M:%S")) for r in runs)
    assert all(1 <= b - a <= 3 for a, b in zip(created, created[1:])), created
    task = server.post("/v1/api/task/get_by_id", {"id": task_id}).json()
    assert task["schedule"] == "* * * * * */2" and task["status"] == "started"
    pids = []
    for run in runs:
        logs = server.post("/v1/api/task/get_logs_for_run", {"id": run["run_id"]}).json()["logs"]
        if logs:
            pids.append(int(logs[0].rsplit(" ", 1)[1]))
    assert pids and all(process_alive(p) for p in pids)

    reply = server.post("/v1/api/task/kill", {"id": task_id})
    assert reply.status_code == 202 and reply.json()["status"] == "pending_kill"
    task = wait_task(server, task_id, ("killed",), timeout=30)
    assert task["killed"] is True
    deadline = time.monotonic() + 10
    while any(process_alive(p) for p in pids):
        assert time.monotonic() < deadline, "a killed run is still running"
        time.sleep(0.1)
    count = len(runs_of(server, task_id))
    for run in runs_of(server, task_id):
        assert server.post("/v1/api/task/get_logs_for_run", {"id": run["run_id"]}).json()["logs"] == []
        assert run["status"] in ("killed", "success", "failure")
    time.sleep(3)
    assert len(runs_of(server, task_id)) == count, "a killed task fired again"
    assert server.post("/v1/api/task/list", {"workspace_id": workspace, "killed": True}).json()


def test_continuous_task_runs_again_after_each_run(server: Server, workspace: int) -> None:
    orchestration = ready_orchestration(server, workspace, {"main.py": b"print('tick')\n"})
    task_id = server.post("/v1/api/task/run_continuously", {"workspace_id": workspace, "orch_id": orchestration["id"],
                                                            "name": "loop", "json": {}}).json()["id"]
    deadline = time.monotonic() + 60
    while len(runs_of(server, task_id, status="success")) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    server.post("/v1/api/task/kill", {"id": task_id})
    wait_task(server, task_id, ("killed",))


@pytest.mark.parametrize("entries, symlink, reason", [
    ({"job.py": b"print(1)"}, None, "main.py"),
    ({"main.py": b"x", "a/requirements.txt": b"", "b/requirements.txt": b""}, None, "requirements.txt"),
    ({"../main.py": b"x"}, None, "traversal"),
    ({"/abs/main.py": b"x"}, None, "absolute"),
    ({"main.py": b"x"}, "evil", "link"),
    ({f"f{i}.py": b"x" for i in range(60)} | {"main.py": b"x"}, None, "entries"),
    ({"main.py": b"x", "bomb.bin": b"\0" * (40 * 1024 * 1024)}, None, "ratio"),
    ({"main.py": b"x", "requirements.txt": b"-e git+https://example.com/x\n"}, None, "not allowed"),
])
def test_hostile_or_broken_zips_are_refused_and_store_nothing(server: Server, workspace: int, entries, symlink,
                                                              reason) -> None:
    before = server.post("/v1/api/orchestration/list", {"workspace_id": workspace}).json()
    blobs = sorted(p.name for p in (server.home / "artifacts" / "sha256").rglob("*") if p.is_file())
    reply = upload(server, workspace, make_zip(entries, symlink=symlink))
    assert reply.status_code == 400, reply.text
    assert reason in reply.json()["msg"], reply.json()
    assert server.post("/v1/api/orchestration/list", {"workspace_id": workspace}).json() == before
    assert sorted(p.name for p in (server.home / "artifacts" / "sha256").rglob("*") if p.is_file()) == blobs


def test_bad_requests_are_4xx(server: Server, workspace: int) -> None:
    assert upload(server, workspace, b"not a zip").status_code == 400
    reply = httpx.post(f"{server.url}/v1/api/orchestration/upload", headers=server.headers,
                       files={"file": ("x.zip", make_zip({"main.py": b"x"}), "application/zip")})
    assert reply.status_code == 400 and reply.json()["field"] == "metadata"
    big = os.urandom(9 * 1024 * 1024)
    assert upload(server, workspace, big).status_code == 413
    orchestration = ready_orchestration(server, workspace, {"main.py": b"print(1)"})
    base = {"workspace_id": workspace, "orch_id": orchestration["id"], "json": {}}
    for schedule in ("", "* * *", "61 * * * *", "not cron", "* * * * * * * *"):
        reply = server.post("/v1/api/task/run_scheduled", {**base, "schedule": schedule})
        assert reply.status_code == 400 and reply.json()["field"] == "schedule", (schedule, reply.text)
    assert server.post("/v1/api/task/run_once", {**base, "orch_id": "nope"}).status_code == 404
    assert server.post("/v1/api/task/run_once", {**base, "timeout": -1}).status_code == 400
    assert server.post("/v1/api/task/run_once", {**base, "json": [1]}).status_code == 400
    assert server.post("/v1/api/task/run_scheduled", {**base, "schedule": "* * * * *", "overlap": "x"}).status_code == 400
    assert server.post("/v1/api/task/get_by_id", {"id": "nope"}).status_code == 404
    assert server.post("/v1/api/task/kill", {"id": "nope"}).status_code == 404
    assert server.post("/v1/api/task/list_task_runs", {"task_id": "nope"}).status_code == 404
    assert server.post("/v1/api/task/get_logs_for_run", {"id": "nope"}).status_code == 404
    assert server.post("/v1/api/orchestration/list", {"workspace_id": 98765}).status_code == 404


def test_a_task_deploys_infers_and_undeploys_with_its_own_token(server: Server, workspace: int, model_dir) -> None:
    model = upload_model(server, workspace, "job-ccfraud", build_ccfraud_onnx(model_dir / "job.onnx"), "onnx")
    create_pipeline(server, workspace, "job-pipeline", [model])
    script = b'''
import os
import pandas as pd
import modelport

wl = modelport.Client()
assert os.environ["MODELPORT_TOKEN"] != ""
args = wl.task_args()
pipeline = wl.pipeline(args["pipeline_name"], workspace=args["workspace_id"])
print("Deploying the pipeline.")
deployment = wl.deploy(pipeline)
print("Performing sample inference.")
result = wl.infer(deployment, pd.DataFrame({"dense_input": [args["row"]]}))
print("score", result["out.dense_1"][0][0])
print("Undeploying the pipeline")
wl.undeploy(deployment)
'''
    orchestration = ready_orchestration(server, workspace, {"main.py": script})
    task_id = server.post("/v1/api/task/run_once", {
        "workspace_id": workspace, "orch_id": orchestration["id"],
        "json": {"pipeline_name": "job-pipeline", "workspace_id": workspace, "row": SEED_DENSE_INPUT}}).json()["id"]
    task = wait_task(server, task_id, ("success", "failed"), timeout=180)
    run = runs_of(server, task_id)[0]
    logs = server.post("/v1/api/task/get_logs_for_run", {"id": run["run_id"]}).json()["logs"]
    assert task["status"] == "success", logs
    assert any(" stdout F score " in line for line in logs) and logs[-1].endswith("Undeploying the pipeline")
    tokens = httpx.get(f"{server.url}/modelport/v1/tokens", headers=server.headers).json()["tokens"]
    run_tokens = [t for t in tokens if t["name"] == f"run {run['run_id']}"]
    assert run_tokens and all(t["revoked"] for t in run_tokens)


def test_schedules_survive_a_restart_and_interrupted_runs_are_failed(tmp_path, fresh_database_url) -> None:
    env = {"MODELPORT_ALLOW_SECOND_SCHEDULES": "1", "MODELPORT_KILL_GRACE_S": "1"}
    srv = Server(tmp_path / "home", database_url=fresh_database_url, env=env).start()
    try:
        ws = srv.post("/v1/api/workspaces/create", {"workspace_name": "restart-jobs"}).json()["workspace_id"]
        quick = ready_orchestration(srv, ws, {"main.py": b"print('hello')\n"})
        slow = ready_orchestration(srv, ws, {"main.py": b"import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(300)\n"})
        scheduled = srv.post("/v1/api/task/run_scheduled", {"workspace_id": ws, "orch_id": quick["id"], "json": {},
                                                             "schedule": "* * * * * */2"}).json()["id"]
        long_run = srv.post("/v1/api/task/run_once", {"workspace_id": ws, "orch_id": slow["id"], "json": {}}).json()["id"]
        wait_task(srv, long_run, ("started",))
        deadline = time.monotonic() + 20
        while not runs_of(srv, long_run)[0]["status"] == "running" or not srv.post(
                "/v1/api/task/get_logs_for_run", {"id": runs_of(srv, long_run)[0]["run_id"]}).json()["logs"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        run = runs_of(srv, long_run)[0]
        pid = int(srv.post("/v1/api/task/get_logs_for_run", {"id": run["run_id"]}).json()["logs"][0].rsplit(" ", 1)[1])
        srv.process.kill()  # the server dies without cleaning up
        srv.process.wait()
        srv.start()
        before = len(runs_of(srv, scheduled))
        interrupted = runs_of(srv, long_run)[0]
        assert interrupted["status"] == "failure" and "server stopped" in interrupted["reason"]
        deadline = time.monotonic() + 10
        while process_alive(pid):
            assert time.monotonic() < deadline, "the interrupted run's process survived the restart"
            time.sleep(0.1)
        deadline = time.monotonic() + 20
        while len(runs_of(srv, scheduled)) < before + 2:
            assert time.monotonic() < deadline, "the schedule stopped firing after the restart"
            time.sleep(0.1)
    finally:
        srv.stop()


def test_two_servers_on_one_database_never_fire_a_tick_twice(tmp_path, fresh_database_url) -> None:
    if fresh_database_url is None:
        pytest.skip("several servers share a PostgreSQL database; on SQLite a second server refuses to start "
                    "(test_serve_and_cli)")
    # each server has a home of its own; the artifacts live in a folder both reach (a shared mount in scale-out)
    env = {"MODELPORT_ALLOW_SECOND_SCHEDULES": "1", "MODELPORT_ARTIFACTS": str(tmp_path / "artifacts")}
    first = Server(tmp_path / "first", database_url=fresh_database_url, env=env).start()
    second = Server(tmp_path / "second", database_url=fresh_database_url, env=env)
    try:
        ws = first.post("/v1/api/workspaces/create", {"workspace_name": "twins"}).json()["workspace_id"]
        orchestration = ready_orchestration(first, ws, {"main.py": b"print('once per tick')\n"})
        second.start()
        task_id = first.post("/v1/api/task/run_scheduled", {"workspace_id": ws, "orch_id": orchestration["id"],
                                                            "json": {}, "schedule": "* * * * * *"}).json()["id"]
        time.sleep(6)
        runs = runs_of(first, task_id)
        assert 4 <= len(runs) <= 8, runs
        seconds = [r["created_at"][:19] for r in runs]
        assert len(seconds) == len(set(seconds)), f"a tick fired twice: {seconds}"
        first.post("/v1/api/task/kill", {"id": task_id})
    finally:
        second.stop()
        first.stop()


def test_overlap_forbid_skips_ticks_while_a_run_is_active(server: Server, workspace: int) -> None:
    orchestration = ready_orchestration(server, workspace, {"main.py": b"import time\ntime.sleep(2.5)\n"})
    task_id = server.post("/v1/api/task/run_scheduled", {
        "workspace_id": workspace, "orch_id": orchestration["id"], "json": {}, "schedule": "* * * * * *",
        "overlap": "forbid"}).json()["id"]
    time.sleep(6)
    server.post("/v1/api/task/kill", {"id": task_id})
    wait_task(server, task_id, ("killed",))
    runs = runs_of(server, task_id)
    assert 1 <= len(runs) <= 3, runs  # a tick a second, but one run at a time of 2.5 s each
