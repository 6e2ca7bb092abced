"""Craft AI deployments: trigger-to-result latency of `low_latency` (a warm process) against `elastic` (a process per
execution), both through the official craft-ai-sdk's `trigger_endpoint` against one real modelport server.

Writes (or replaces) the "Craft AI deployments" section of BENCHMARKS.md, inside its Notes.
Run: `make bench-craftai` (or `python benchmarks/craftai_latency.py --runs 30`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from craft_ai_sdk import CraftAiSdk  # noqa: E402
from craft_ai_sdk.io import Input, Output  # noqa: E402

from tests.support import Server  # noqa: E402

FUNCTION = "def predict(x):\n    return {'y': x * 2}\n"
SECTION = "### Craft AI deployments: trigger-to-result latency"


def measure(server: Server, path: str, token: str, runs: int) -> list[float]:
    """Trigger-to-result: POST the inputs to the endpoint, then GET the result (which waits for the execution)."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        def once(x: int) -> float:
            started = time.perf_counter()
            execution = http.post(f"/endpoints/{path}", json={"x": x},
                                  headers={"Authorization": f"EndpointToken {token}"}).json()["execution_id"]
            result = http.get(f"/endpoints/v1/{path}/executions/{execution}", params={"token": token}).json()
            elapsed = time.perf_counter() - started
            assert result["outputs"]["y"]["value"] == x * 2, result
            return elapsed

        once(1)  # warm-up
        return [once(i) for i in range(runs)]


def measure_sdk(sdk: CraftAiSdk, name: str, token: str, runs: int) -> list[float]:
    """The same through the SDK's trigger_endpoint, which also looks the deployment up twice per call."""
    samples = []
    for i in range(runs):
        started = time.perf_counter()
        assert sdk.trigger_endpoint(name, token, inputs={"x": i})["outputs"]["y"] == i * 2
        samples.append(time.perf_counter() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mp-bench-craft-") as tmp:
        server = Server(Path(tmp) / "home").start()
        try:
            sdk = CraftAiSdk(sdk_token=server.token, environment_url=server.url, control_url=server.url,
                             verbose_log=False)
            code = Path(tmp) / "code"
            code.mkdir()
            (code / "main.py").write_text(FUNCTION)
            sdk.create_pipeline(pipeline_name="double", function_path="main.py", function_name="predict",
                                container_config={"local_folder": str(code)},
                                inputs=[Input("x", "number")], outputs=[Output("y", "number")])
            results, through_sdk = {}, {}
            for mode in ("elastic", "low_latency"):
                name = f"double-{mode.replace('_', '-')}"
                token = sdk.create_deployment(pipeline_name="double", deployment_name=name,
                                              execution_rule="endpoint", mode=mode)["endpoint_token"]
                results[mode] = measure(server, name, token, args.runs)
                through_sdk[mode] = measure_sdk(sdk, name, token, args.runs)
        finally:
            server.stop()
    lines = [SECTION, "", f"One server, {args.runs} sequential triggers per mode of a function that doubles a number. "
             "Trigger-to-result: `POST /endpoints/<path>` with the inputs, then `GET /endpoints/v1/<path>/executions/"
             "<id>` (which answers when the execution has finished). The SDK column is the same through "
             "`trigger_endpoint`, which adds two deployment lookups per call.", "",
             "| mode | p50 ms | mean ms | p95 ms | SDK trigger_endpoint p50 ms |", "|---|---|---|---|---|"]
    for mode, samples in results.items():
        ordered = sorted(samples)
        lines.append(f"| {mode} | {statistics.median(ordered) * 1000:.1f} | {statistics.mean(ordered) * 1000:.1f} | "
                     f"{ordered[int(len(ordered) * 0.95) - 1] * 1000:.1f} | "
                     f"{statistics.median(through_sdk[mode]) * 1000:.1f} |")
    ratio = statistics.median(results["elastic"]) / statistics.median(results["low_latency"])
    lines += ["", f"low_latency is **{ratio:.1f}x** faster than elastic at the median (target: at least 5x): it "
              "reuses one warm process, where elastic starts a Python process and imports the function per "
              "execution.", ""]
    text = args.output.read_text() if args.output.exists() else "# Benchmarks\n\n## Notes\n"
    if SECTION in text:
        before, rest = text.split(SECTION, 1)
        after = rest.split("\n### ", 1)
        text = before + "\n".join(lines) + ("\n### " + after[1] if len(after) > 1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines)
    args.output.write_text(text)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
