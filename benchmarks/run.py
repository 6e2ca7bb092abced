"""`make bench`: modelport against MLServer and the raw ASGI floor, same model, same load, same machine, one run.

Each server is pinned to core 0 (`taskset -c 0`, inherited by its replica processes) and driven by wrk pinned to
core 1, POSTing the same Open Inference Protocol body. All servers stay up and are measured in rounds of back-to-back
points, so each ratio compares servers measured within seconds of each other. Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"
LUA = Path(__file__).with_name("post.lua")
SERVER_CORE, LOAD_CORE = "0", "1"
TOKEN = "mp_benchmark_admin_token_0123456789"
V2_BODY = {"inputs": [{"name": "predict", "shape": [1, 4], "datatype": "FP32", "data": [[5.1, 3.5, 1.4, 0.2]]}]}
RECORDS_BODY = [{"features": [5.1, 3.5, 1.4, 0.2]}]


@dataclass
class Result:
    server: str
    scenario: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    rows_per_request: int = 1
    round: int = 0  # which interleaved round measured it (0 for a median over rounds)

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.rows_per_request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def start(command: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(["taskset", "-c", SERVER_CORE, *command], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, body: bytes, *, connections: int, duration: int, content_type: str = "application/json",
        auth: str = "", accept: str = "") -> tuple[float, float, float, int]:
    body_file = WORK / "body.bin"
    body_file.write_bytes(body)
    env = {**os.environ, "BODY_FILE": str(body_file), "CONTENT_TYPE": content_type, "AUTH": auth, "ACCEPT": accept}
    out = subprocess.run(["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
                          "-s", str(LUA), url], capture_output=True, text=True, env=env, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    return rps, p50, p99, errors


@dataclass
class Point:
    """What one wrk run measures: a server's endpoint, with a body, at one concurrency."""

    server: str
    scenario: str
    url: str
    body: bytes
    connections: int
    rows: int = 1
    options: dict[str, str] = field(default_factory=dict)


def measure(point: Point, number: int, args: argparse.Namespace) -> Result:
    """One point: a warm-up at 16 connections, then `args.duration` seconds at the point's concurrency."""
    wrk(point.url, point.body, connections=16, duration=args.warmup, **point.options)
    rps, p50, p99, errors = wrk(point.url, point.body, connections=point.connections, duration=args.duration,
                                **point.options)
    print(f"  {point.server:10} {point.scenario:16} c={point.connections:<3} {rps:9.0f} req/s  p50 {p50:7.2f} ms  "
          f"p99 {p99:7.2f} ms" + (f"  errors {errors}" if errors else ""), flush=True)
    return Result(point.server, point.scenario, point.connections, rps, p50, p99, errors, point.rows, number)


# -- the servers ------------------------------------------------------------------------------------------------------

def build_model() -> Path:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    path = WORK / "model" / "model.joblib"
    path.parent.mkdir(parents=True, exist_ok=True)
    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), path)
    return path


def mlserver_python() -> Path:
    venv = WORK / "mlserver-venv"
    python = venv / "bin" / "python"
    if not (venv / ".ready").exists():
        print("installing MLServer 1.7 into .bench/mlserver-venv ...", flush=True)
        uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(python), "mlserver==1.7.*",
                        "mlserver-sklearn==1.7.*", "uvloop<0.22"], check=True)
        (venv / ".ready").touch()
    return python


def start_mlserver(model: Path) -> tuple[subprocess.Popen, str]:
    python = mlserver_python()
    folder = WORK / "mlserver"
    (folder / "iris").mkdir(parents=True, exist_ok=True)
    shutil.copy(model, folder / "iris" / "model.joblib")
    port = free_port()
    (folder / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "parallel_workers": 0,
        "debug": False}))
    (folder / "iris" / "model-settings.json").write_text(json.dumps({
        "name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"}}))
    process = start([str(python.parent / "mlserver"), "start", str(folder)], WORK / "mlserver.log")
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/v2/models/iris/ready")
    return process, url


def start_floor() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = start([sys.executable, "-m", "uvicorn", "hello_asgi:app", "--port", str(port), "--http", "httptools",
                     "--loop", "uvloop", "--no-access-log", "--log-level", "warning"], WORK / "floor.log",
                    cwd=Path(__file__).parent)
    wait_http(f"http://127.0.0.1:{port}/")
    return process, f"http://127.0.0.1:{port}"


def start_modelport(home: Path) -> tuple[subprocess.Popen, str]:
    shutil.rmtree(home, ignore_errors=True)
    port = free_port()
    process = start([sys.executable, "-m", "modelport.cli", "serve", "--port", str(port), "--home", str(home),
                     "--log-level", "warning"], WORK / "modelport.log", env={"MODELPORT_ADMIN_TOKEN": TOKEN})
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz")
    return process, url


def v2_points(server: str, url: str, options: dict[str, str] | None = None) -> dict[str, list[Point]]:
    """A server's Open Inference Protocol points, by concurrency: the body and the load every server gets."""
    body = json.dumps(V2_BODY).encode()
    return {c: [Point(server, "V2 JSON", f"{url}/v2/models/iris/infer", body, int(c), options=options or {})]
            for c in ("1", "64")}


def modelport_points(model: Path, url: str) -> dict[str, list[Point]]:
    """Deploy the model; return modelport's points by concurrency ("1", "64") and "arrow"."""
    import numpy as np
    import pyarrow as pa

    import modelport

    client = modelport.Client(url, TOKEN)
    client.set_workspace("bench")
    version = client.wait_for_model(client.upload_model("iris", model, framework="sklearn"))
    deployment = client.deploy(client.build_pipeline("iris", [version]))
    auth = {"auth": f"Bearer {TOKEN}"}
    records_url = f"{url}/v1/api/pipelines/infer/{deployment.name}/iris"
    rows = np.random.default_rng(0).normal(size=(10_000, 4))
    table = pa.table({"features": pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), 4)})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    arrow = "application/vnd.apache.arrow.file"
    points = v2_points("modelport", url, auth)
    points["64"].append(Point("modelport", "pandas-records", records_url, json.dumps(RECORDS_BODY).encode(), 64,
                              options={**auth, "content_type": "application/json; format=pandas-records"}))
    points["arrow"] = [Point("modelport", "Arrow 10k rows", records_url, sink.getvalue().to_pybytes(), 4, 10_000,
                             options={**auth, "content_type": arrow, "accept": arrow})]
    return points


def bench_servers(model: Path, args: argparse.Namespace, only: set[str]) -> list[Result]:
    """Every server stays up (pinned to the same core; an idle one costs nothing) and each round measures them back
    to back at each concurrency, in the opposite order in every other round. This shared VM's speed drifts by a
    third within minutes: points a minute apart compare that drift, adjacent points compare the servers."""
    servers: list[subprocess.Popen] = []
    groups: dict[str, list[Point]] = {"1": [], "64": [], "arrow": []}
    try:
        def serve(started: tuple[subprocess.Popen, str], points: Callable[[str], dict[str, list[Point]]]) -> None:
            servers.append(started[0])
            for key, more in points(started[1]).items():
                groups[key] += more

        if "mlserver" in only:
            serve(start_mlserver(model), lambda url: v2_points("MLServer", url))
        if "floor" in only:
            serve(start_floor(), lambda url: v2_points("ASGI floor", url))
        if "modelport" in only:
            serve(start_modelport(WORK / "modelport-home"), lambda url: modelport_points(model, url))
        results = []
        for number in range(1, args.rounds + 1):
            print(f"round {number} of {args.rounds}", flush=True)
            for key in ("1", "64", "arrow"):
                points = groups[key] if number % 2 else groups[key][::-1]
                results += [measure(point, number, args) for point in points]
        return results
    finally:
        for process in servers:
            stop(process)


def median_results(results: list[Result]) -> list[Result]:
    """One row per (server, scenario, connections): the median of each figure over the rounds."""
    from statistics import median

    groups: dict[tuple[str, str, int], list[Result]] = {}
    for r in results:
        groups.setdefault((r.server, r.scenario, r.connections), []).append(r)
    return [Result(server, scenario, c, median(r.rps for r in rs), median(r.p50_ms for r in rs),
                   median(r.p99_ms for r in rs), sum(r.errors for r in rs), rs[0].rows_per_request)
            for (server, scenario, c), rs in groups.items()]


def bench_memory(model: Path, cycles: int) -> tuple[int, int, float]:
    """RSS of the API process after the first and the last of `cycles` redeploys (two versions, alternating)."""
    import modelport

    process, url = start_modelport(WORK / "modelport-memory")
    try:
        client = modelport.Client(url, TOKEN)
        client.set_workspace("memory")
        version = client.wait_for_model(client.upload_model("iris", model, framework="sklearn"))
        pipelines = [client.build_pipeline("iris", [version]), client.build_pipeline("iris", [version])]
        first = last = 0
        started = time.monotonic()
        for cycle in range(1, cycles + 1):
            pipeline = pipelines[cycle % 2]
            deployment = client.deploy(pipeline)
            body = json.dumps(V2_BODY).encode()
            for _ in range(20):
                httpx.post(f"{url}/v2/models/iris/infer", content=body, headers={"Authorization": f"Bearer {TOKEN}"})
            while {e["pipeline_version"] for e in client.status(deployment)["engines"]} != {pipeline.latest.version}:
                time.sleep(0.05)
            rss = _rss_kib(process.pid)
            if cycle == 1:
                first = rss
            last = rss
            if cycle % 50 == 0:
                print(f"  cycle {cycle}: API process RSS {rss / 1024:.1f} MiB", flush=True)
        return first, last, time.monotonic() - started
    finally:
        stop(process)


def _rss_kib(pid: int) -> int:
    """The modelport API process: the python child of `taskset` (taskset execs, so it is the same pid)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# -- report -------------------------------------------------------------------------------------------------------------

def find(results: list[Result], server: str, scenario: str, c: int, number: int = 0) -> Result | None:
    return next((r for r in results if (r.server, r.scenario, r.connections, r.round) == (server, scenario, c, number)),
                None)


@dataclass
class Ratio:
    """A target that compares two points: measured as the median of its per-round values (adjacent points)."""

    name: str
    numerator: tuple[str, str, int]
    denominator: tuple[str, str, int]
    figure: str  # "rps", "p50_ms" or "p99_ms"
    limit: float
    at_least: bool  # True: the ratio must be >= limit; False: <= limit

    def per_round(self, results: list[Result], rounds: int) -> list[float]:
        values = []
        for number in range(1, rounds + 1):
            a, b = find(results, *self.numerator, number), find(results, *self.denominator, number)
            if a and b and getattr(b, self.figure):
                values.append(getattr(a, self.figure) / getattr(b, self.figure))
        return values


RATIOS = [
    Ratio("c=64 req/s modelport / MLServer >= 5", ("modelport", "V2 JSON", 64), ("MLServer", "V2 JSON", 64),
          "rps", 5, True),
    Ratio("c=64 p99 modelport / MLServer <= 0.2", ("modelport", "V2 JSON", 64), ("MLServer", "V2 JSON", 64),
          "p99_ms", 0.2, False),
    Ratio("c=64 req/s modelport / ASGI floor >= 0.5", ("modelport", "V2 JSON", 64), ("ASGI floor", "V2 JSON", 64),
          "rps", 0.5, True),
    Ratio("c=1 p50 modelport / MLServer <= 0.5", ("modelport", "V2 JSON", 1), ("MLServer", "V2 JSON", 1),
          "p50_ms", 0.5, False),
    Ratio("pandas-records req/s vs V2 (V2 / records <= 1.5)", ("modelport", "V2 JSON", 64),
          ("modelport", "pandas-records", 64), "rps", 1.5, False),
]


def report(results: list[Result], memory: tuple[int, int, float] | None, args: argparse.Namespace) -> str:
    from statistics import median

    lines = ["# Benchmarks", "",
             f"Measured by `make bench` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores: each server pinned to "
             f"core {SERVER_CORE} (with its replica processes), wrk pinned to core {LOAD_CORE}, {args.duration} s per "
             f"point after a {args.warmup} s warm-up. Every server stays up for the whole run; each of the "
             f"{args.rounds} rounds measures them back to back at each concurrency (in the opposite order every other "
             "round), the table gives the median of each figure over the rounds, and each target is the median of its "
             "per-round ratios. Model: scikit-learn LogisticRegression on iris, trained at run time. MLServer 1.7 "
             "(mlserver-sklearn, parallel_workers=0, the fastest setting in the reference figures). The floor is a raw "
             "ASGI app on uvicorn + httptools answering a fixed body. modelport requests carry a bearer token "
             "(MLServer's and the floor's do not).", "",
             "| server | endpoint | connections | req/s | p50 ms | p99 ms | rows/s | non-2xx |", "|---|---|---|---|---|---|---|---|"]
    for r in median_results(results):
        lines.append(f"| {r.server} | {r.scenario} | {r.connections} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
                     f"{r.rows_per_s:,.0f} | {r.errors} |")
    lines += ["", "## Targets", "", "| target | median | per round | met |", "|---|---|---|---|"]

    def row(target: str, value: float | None, ok: bool | None, fmt: str = "{:.2f}", rounds: str = "") -> None:
        lines.append(f"| {target} | {fmt.format(value) if value is not None else 'not measured'} | {rounds} | "
                     f"{'yes' if ok else 'no' if ok is not None else '-'} |")

    for ratio in RATIOS:
        values = ratio.per_round(results, args.rounds)
        if values:
            value = median(values)
            row(ratio.name, value, value >= ratio.limit if ratio.at_least else value <= ratio.limit,
                rounds=", ".join(f"{v:.2f}" for v in values))
    arrow = [r.rows_per_s for r in results if r.scenario == "Arrow 10k rows"]
    if arrow:
        row("Arrow 10,000-row requests, rows/s >= 1,000,000", median(arrow), median(arrow) >= 1_000_000, "{:,.0f}",
            ", ".join(f"{v:,.0f}" for v in arrow))
    if memory:
        first, last, seconds = memory
        growth = (last - first) / first
        row(f"API RSS after {args.memory_cycles} redeploys within 10% of cycle 1 "
            f"({first / 1024:.1f} -> {last / 1024:.1f} MiB, {seconds:.0f} s)", growth * 100, abs(growth) <= 0.10,
            "{:+.1f}%")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--memory-cycles", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of back-to-back points of every server")
    parser.add_argument("--only", choices=["mlserver", "floor", "modelport", "memory"], action="append")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset"):
        sys.exit("wrk and taskset are needed: apt-get install wrk util-linux")
    WORK.mkdir(exist_ok=True)
    model = build_model()
    only = set(args.only or ["mlserver", "floor", "modelport", "memory"])
    results = bench_servers(model, args, only) if only & {"mlserver", "floor", "modelport"} else []
    memory = bench_memory(model, args.memory_cycles) if "memory" in only else None
    text = report(results, memory, args)
    print(text)
    if not args.only:
        notes = args.output.read_text().split("## Notes", 1)[1] if args.output.exists() and "## Notes" in args.output.read_text() else None
        args.output.write_text(text + ("\n## Notes" + notes if notes else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
