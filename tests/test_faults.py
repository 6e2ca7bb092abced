"""Faults, with a real server under load: `kill -9` leaves no process behind and a restart serves everything again
without duplicates; SIGTERM answers every request it accepted and exits within the drain timeout."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import zipfile
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.support import (
    SEED_DENSE_INPUT, Server, build_ccfraud_onnx, create_pipeline, deploy, infer_records, upload_model, wait_status,
)

pytestmark = pytest.mark.database

# A task whose run starts a child of its own (the grandchild of the server), then waits: both must die with the server.
FAMILY_MAIN = b'''
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("pids", os.getpid(), child.pid, flush=True)
time.sleep(600)
'''

# A python model that takes its time to load: its check process is running when the server dies.
SLOW_LOADING_MODEL = b'''
import time
time.sleep(600)


class Never:
    def predict(self, frame):
        return frame
'''

# A python model that sleeps as long as its input says: a request that hangs.
SLEEPY_MODEL = b'''
import pathlib
import time
import pandas as pd


class Sleepy:
    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        pathlib.Path(frame["marker"].iloc[0]).touch()  # the test waits for this: the request is in the model
        time.sleep(float(frame["seconds"].max()))
        return pd.DataFrame({"slept": frame["seconds"]})
'''


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def proc_scan() -> list[tuple[int, int, int]]:
    """(pid, ppid, pgid) of every live process on the machine."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                found.append((int(entry.name), int(fields[1]), int(fields[2])))
    return found


def ledger(srv: Server, database_url: str | None) -> tuple[list[dict], list[dict]]:
    """The servers and owned processes the database records (read straight from it, as an operator would)."""
    engine = create_engine(database_url or f"sqlite:///{srv.home / 'modelport.db'}")
    try:
        with engine.connect() as c:
            servers = [dict(r._mapping) for r in c.execute(text("SELECT * FROM servers"))]
            processes = [dict(r._mapping) for r in c.execute(text("SELECT * FROM server_processes"))]
    finally:
        engine.dispose()
    return servers, processes


def wait_until(condition, timeout: float, message: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message() if callable(message) else message
        time.sleep(0.05)


def python_model_zip(source: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("main.py", source)
    return buffer.getvalue()


def ready_orchestration(srv: Server, workspace: int, main: bytes) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("main.py", main)
    reply = httpx.post(f"{srv.url}/v1/api/orchestration/upload", headers=srv.headers, timeout=60, files=[
        ("file", ("orchestration.zip", buffer.getvalue(), "application/octet-stream")),
        ("metadata", ("metadata", json.dumps({"workspace_id": workspace, "name": "family"}), "application/json"))])
    assert reply.status_code == 202, reply.text
    orch_id = reply.json()["id"]
    wait_until(lambda: next(o for o in srv.post("/v1/api/orchestration/list", {"workspace_id": workspace}).json()
                            if o["id"] == orch_id)["status"] == "ready", 120, "the orchestration never got ready")
    return orch_id


class Load:
    """Client threads sending inferences back to back on keep-alive connections, counting what comes back."""

    def __init__(self, srv: Server, targets: list[tuple[str, str]], threads: int = 2) -> None:
        self.srv = srv
        self.targets = targets
        self.stop = threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def _run(self, index: int) -> None:
        headers = {**self.srv.headers, "Content-Type": "application/json; format=pandas-records"}
        body = json.dumps([{"dense_input": SEED_DENSE_INPUT}]).encode()
        deployment, pipeline = self.targets[index % len(self.targets)]
        url = f"{self.srv.url}/v1/api/pipelines/infer/{deployment}/{pipeline}"
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    reply = client.post(url, content=body, headers=headers)
                    outcome = str(reply.status_code)
                except httpx.ConnectError:
                    outcome = "refused"  # never accepted: the server is not listening (any more)
                except httpx.HTTPError as exc:
                    outcome = "dropped"
                    with self.lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                with self.lock:
                    self.outcomes[outcome] += 1
                if outcome == "refused":
                    time.sleep(0.02)

    def count(self, outcome: str) -> int:
        with self.lock:
            return self.outcomes[outcome]


def test_kill_9_leaves_no_process_and_a_restart_serves_everything_once(tmp_path, fresh_database_url,
                                                                        model_dir) -> None:
    env = {"MODELPORT_KILL_GRACE_S": "1", "MODELPORT_MODEL_CHECK_TIMEOUT_S": "15"}
    srv = Server(tmp_path / "home", database_url=fresh_database_url, env=env).start()
    try:
        ws = srv.post("/v1/api/workspaces/create", {"workspace_name": "faults"}).json()["workspace_id"]
        model = upload_model(srv, ws, "ccfraud", build_ccfraud_onnx(model_dir / "faults.onnx"), "onnx")
        names = {}
        for name, replicas in (("pair", 2), ("single", 1)):
            pipeline = create_pipeline(srv, ws, name, [model])
            names[name] = f"{name}-{deploy(srv, name, pipeline, {'engine': {'replicas': replicas}})}"
        for name in names.values():
            wait_status(srv, name)
        orch = ready_orchestration(srv, ws, FAMILY_MAIN)
        task = srv.post("/v1/api/task/run_once", {"workspace_id": ws, "orch_id": orch, "json": {}}).json()["id"]

        def run_pids() -> list[int]:
            runs = srv.post("/v1/api/task/list_task_runs", {"task_id": task}).json()
            if not runs:
                return []
            logs = srv.post("/v1/api/task/get_logs_for_run", {"id": runs[0]["run_id"]}).json()["logs"]
            line = next((entry for entry in logs if " pids " in entry), None)
            return [int(p) for p in line.split(" pids ", 1)[1].split()] if line else []

        wait_until(lambda: len(run_pids()) == 2, 60, "the task never started its child")
        run_pid, grandchild = run_pids()
        archive = model_dir / "slow-loading.zip"
        archive.write_bytes(python_model_zip(SLOW_LOADING_MODEL))
        upload_model(srv, ws, "slow-loading", archive, "python")
        wait_until(lambda: any(p["kind"] == "model_check" for p in ledger(srv, fresh_database_url)[1]), 30,
                   "the model check never started")
        servers, owned = ledger(srv, fresh_database_url)
        assert [s["pid"] for s in servers] == [srv.process.pid]
        kinds = Counter(p["kind"] for p in owned)
        assert kinds == {"replica": 3, "task_run": 1, "model_check": 1}, owned
        assert run_pid in {p["pid"] for p in owned if p["kind"] == "task_run"}
        replica_pids = {p["pid"] for p in owned if p["kind"] == "replica"}
        for name in names.values():
            engines = wait_status(srv, name)["engines"]
            assert {int(e["details"][0].split()[-1]) for e in engines} <= replica_pids
        old_pids = {p["pid"] for p in owned} | {grandchild}
        old_groups = {p["pgid"] for p in owned}

        with Load(srv, [(names["pair"], "pair"), (names["single"], "single")]) as load:
            wait_until(lambda: load.count("200") >= 20, 30, lambda: f"no load got through: {load.outcomes}")
            srv.process.kill()  # kill -9: the server cleans up nothing
            srv.process.wait()
            # every replica, the run and the run's own child die with it, within a few seconds
            wait_until(lambda: not any(alive(pid) for pid in old_pids), 5,
                       lambda: f"still alive after kill -9: {[p for p in old_pids if alive(p)]}")
            assert not [p for p in proc_scan() if p[2] in old_groups], "a process of the old server's groups survived"

        srv.start()  # the same home
        servers, owned = ledger(srv, fresh_database_url)
        assert [s["pid"] for s in servers] == [srv.process.pid], "the dead server's row was not cleared"
        assert not {p["pid"] for p in owned} & old_pids and not any(alive(pid) for pid in old_pids)
        for name in names.values():
            wait_status(srv, name)
        for name, deployment in names.items():
            reply = infer_records(srv, deployment, name, [{"dense_input": SEED_DENSE_INPUT}])
            assert reply.status_code == 200, reply.text
        run = srv.post("/v1/api/task/list_task_runs", {"task_id": task}).json()[0]
        assert run["status"] == "failure" and "lost" in run["reason"], run
        # exactly the replicas the deployments ask for: 3, all children of the new server, all in the ledger
        _, owned = ledger(srv, fresh_database_url)
        replicas = [p for p in owned if p["kind"] == "replica"]
        assert len(replicas) == 3, owned
        workers = [pid for pid, ppid, _ in proc_scan() if ppid == srv.process.pid
                   and b"modelport.serving.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert sorted(workers) == sorted(p["pid"] for p in replicas)
    finally:
        srv.stop()


def test_sigterm_answers_every_accepted_request_and_exits_within_the_drain_timeout(tmp_path, fresh_database_url,
                                                                                  model_dir) -> None:
    drain = 3.0
    srv = Server(tmp_path / "home", database_url=fresh_database_url,
                 env={"MODELPORT_DRAIN_TIMEOUT_S": str(drain), "MODELPORT_KILL_GRACE_S": "1"}).start()
    try:
        ws = srv.post("/v1/api/workspaces/create", {"workspace_name": "drain"}).json()["workspace_id"]
        fast = upload_model(srv, ws, "ccfraud", build_ccfraud_onnx(model_dir / "drain.onnx"), "onnx")
        archive = model_dir / "sleepy.zip"
        archive.write_bytes(python_model_zip(SLEEPY_MODEL))
        slow = upload_model(srv, ws, "sleepy", archive, "python")
        fast_name = f"quick-{deploy(srv, 'quick', create_pipeline(srv, ws, 'quick', [fast]))}"
        slow_name = f"hang-{deploy(srv, 'hang', create_pipeline(srv, ws, 'hang', [slow]))}"
        wait_status(srv, fast_name)
        wait_status(srv, slow_name, timeout=120)
        _, owned = ledger(srv, fresh_database_url)
        replica_pids = [p["pid"] for p in owned if p["kind"] == "replica"]
        assert len(replica_pids) == 2

        hung: dict[str, object] = {}

        marker = tmp_path / "in-the-model"

        def hang() -> None:
            try:
                hung["reply"] = infer_records(srv, slow_name, "hang", [{"seconds": 120, "marker": str(marker)}])
            except httpx.HTTPError as exc:
                hung["error"] = exc

        with Load(srv, [(fast_name, "quick")], threads=3) as load:
            wait_until(lambda: load.count("200") >= 30, 30, lambda: f"no load got through: {load.outcomes}")
            hanging = threading.Thread(target=hang, daemon=True)
            hanging.start()
            wait_until(marker.exists, 30, "the hanging request never reached the model")
            served = load.count("200")
            started = time.monotonic()
            srv.process.send_signal(signal.SIGTERM)
            code = srv.process.wait(timeout=drain + 15)
            took = time.monotonic() - started
            wait_until(lambda: load.count("refused") >= 3, 10, lambda: f"clients never saw it stop: {load.outcomes}")
        hanging.join(timeout=10)
        assert load.count("200") > served, "nothing was served while draining"
        assert not load.failures, f"accepted requests were dropped: {load.failures[:5]} {load.outcomes}"
        assert set(load.outcomes) <= {"200", "refused"}, load.outcomes
        assert code in (0, -signal.SIGTERM), srv.log()[-3000:]  # uvicorn re-raises the signal it handled
        assert took < drain + 5, f"SIGTERM took {took:.1f} s with a drain timeout of {drain} s"
        assert "reply" in hung, f"the hanging request was not answered: {hung}"
        assert hung["reply"].status_code == 503, hung["reply"].text  # type: ignore[union-attr]
        assert not any(alive(pid) for pid in replica_pids)
    finally:
        srv.stop()


SPAWNER = r'''
import asyncio, os, sys, threading
from modelport.backends import local

async def main():
    # a Python module run in the guard's process, and a script that starts a child of its own
    module = await local.spawn("replica", "m", [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"],
                               stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    script = await local.spawn("task_run", "s", [sys.executable, sys.argv[1]], stdout=asyncio.subprocess.PIPE)
    family = (await script.stdout.readline()).split()
    # any other program, from a worker thread (how environment builds run)
    threading.Thread(target=local.run_blocking, args=("environment", "e", ["sleep", "613.2"]),
                     kwargs={"python": False, "timeout_s": 600}, daemon=True).start()
    await asyncio.sleep(0.5)
    print(module.pid, *(f.decode() for f in family), flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
'''


def test_every_kind_of_process_dies_with_the_process_that_started_it(tmp_path) -> None:
    """Without a server: backends/local.py's helper alone, its parent killed with SIGKILL."""
    import subprocess
    import sys

    script = tmp_path / "family.py"
    script.write_text("import subprocess, sys, time, os\n"
                      "child = subprocess.Popen(['sleep', '613.1'])\n"
                      "print(os.getpid(), child.pid, flush=True)\ntime.sleep(600)\n")
    spawner = tmp_path / "spawner.py"
    spawner.write_text(SPAWNER)
    parent = subprocess.Popen([sys.executable, str(spawner), str(script)], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]  # type: ignore[union-attr]
        assert len(pids) == 3 and all(alive(p) for p in pids)
        groups = {pgid for pid, _, pgid in proc_scan() if pid in pids}
        ours = (b"sleep\x00613.1\x00", b"sleep\x00613.2\x00")
        sleepers = [pid for pid, _, _ in proc_scan() if _cmdline(pid) in ours]
        assert len(sleepers) == 2  # the script's child and the one run through the guard's --exec
        parent.kill()
        parent.wait()
        everything = set(pids) | set(sleepers)
        wait_until(lambda: not any(alive(p) for p in everything), 5,
                   lambda: f"survived their parent: {[p for p in everything if alive(p)]}")
        assert not [p for p in proc_scan() if p[2] in groups]
    finally:
        if parent.poll() is None:
            parent.kill()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_start_ends_only_what_dead_incarnations_of_its_server_recorded(tmp_path) -> None:
    """The ledger alone: a recorded pid now held by another process (another start time) is left alone, and so are
    the processes of a server that still runs on the same home."""
    import subprocess
    import uuid

    from modelport.backends.ledger import ServerLedger, boot_id
    from modelport.backends.local import process_start_time
    from modelport.store.database import Database
    from modelport.store.tables import ServerProcess, ServerRecord

    db = Database(f"sqlite:///{tmp_path / 'ledger.db'}")
    db.migrate()
    ledger_ = ServerLedger(db, home=tmp_path / "home")
    gone = subprocess.Popen(["true"])
    gone.wait()
    left, reused, peers = (subprocess.Popen(["sleep", f"613.{n}"], start_new_session=True) for n in (6, 7, 8))
    try:
        dead_id, live_id = str(uuid.uuid4()), str(uuid.uuid4())
        with db.session() as s:
            s.add(ServerRecord(id=dead_id, name=ledger_.name, home=ledger_.home, host=ledger_.host, pid=gone.pid,
                               pid_start=1, boot_id=boot_id()))
            s.add(ServerRecord(id=live_id, name=ledger_.name, home=ledger_.home, host=ledger_.host, pid=os.getpid(),
                               pid_start=process_start_time(os.getpid()), boot_id=boot_id()))
            s.flush()
            s.add(ServerProcess(server_id=dead_id, kind="replica", subject="v", pid=left.pid, pgid=left.pid,
                                start_time=process_start_time(left.pid)))
            s.add(ServerProcess(server_id=dead_id, kind="task_run", subject="r", pid=reused.pid, pgid=reused.pid,
                                start_time=process_start_time(reused.pid) - 1))  # the pid was someone else's then
            s.add(ServerProcess(server_id=live_id, kind="replica", subject="w", pid=peers.pid, pgid=peers.pid,
                                start_time=process_start_time(peers.pid)))
        recovery = ledger_.reap()
        assert recovery.servers == [dead_id]
        assert {(p.kind, p.ended) for p in recovery.processes} == {("replica", True), ("task_run", False)}
        assert left.wait(timeout=5) == -signal.SIGKILL
        assert reused.poll() is None and peers.poll() is None
        with db.session() as s:
            assert [r.id for r in s.query(ServerRecord)] == [live_id]
            assert [p.pid for p in s.query(ServerProcess)] == [peers.pid]
    finally:
        for process in (left, reused, peers):
            process.kill()
            process.wait()
        db.close()
