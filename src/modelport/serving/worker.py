"""A replica: `python -m modelport.serving.worker SPEC_JSON_PATH`.

Loads every step of one pipeline version, then serves batches over a Unix socket, one at a time: each step's outputs
feed the next step. It reports on stdout one JSON line, {"ready": ...} or {"error": ...}, so its supervisor knows
whether loading worked; after that stdout and stderr are its log.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from modelport.serving import wire
from modelport.serving.runtimes import Columns, Runtime, load_runtime


class Pipeline:
    def __init__(self, spec: dict[str, Any], workdir: Path) -> None:
        self.steps: list[Runtime] = []
        self.models: list[dict[str, Any]] = []
        for i, step in enumerate(spec["steps"]):
            model = step["models"][0]  # alternatives within one step (A/B) are expressed as variants instead
            if model.get("environment"):
                os.environ.update(model["environment"])  # the container's Environment (SAGEMAKER_PROGRAM, ...)
            runtime = load_runtime(model["framework"], Path(model["path"]), workdir / f"step{i}",
                                   entry=model.get("entry", ""))
            self.steps.append(runtime)
            self.models.append({"name": model["name"], "version": model["version"], "sha": model["sha"],
                                "signature": runtime.signature()})

    def run(self, columns: Columns, outputs: frozenset[str] | None = None) -> tuple[Columns, list[int]]:
        """Outputs of the last step (only `outputs`, when named), and the nanoseconds each step took."""
        elapsed = []
        last = len(self.steps) - 1
        for i, runtime in enumerate(self.steps):
            start = time.perf_counter_ns()
            columns = runtime.predict(columns, outputs if i == last else None)
            elapsed.append(time.perf_counter_ns() - start)
        return columns, elapsed


def serve(pipeline: Pipeline, sock_path: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(4)
    print(json.dumps({"ready": True, "models": pipeline.models}, default=str), flush=True)
    while True:
        conn, _ = listener.accept()
        with conn:
            _serve_connection(pipeline, conn)


def _serve_connection(pipeline: Pipeline, conn: socket.socket) -> None:
    while True:
        try:
            header, columns = wire.read_frame_blocking(conn)
        except ConnectionError:
            return
        if header.get("op") == "ping":
            conn.sendall(b"".join(wire.encode({"ok": True})))
            continue
        if header.get("op") == "invoke":  # raw bytes through a SageMaker-style handler or a python function
            conn.sendall(b"".join(bytes(chunk) for chunk in _invoke(pipeline, header, columns)))
            continue
        try:
            wanted = header.get("outputs")
            outputs, elapsed = pipeline.run(columns, frozenset(wanted) if wanted else None)
            rows = header.get("rows")
            for name, array in outputs.items():
                if rows is not None and (array.ndim == 0 or len(array) != rows):
                    raise ValueError(f"output {name!r} has {len(array) if array.ndim else 0} rows, expected {rows}")
            reply = wire.encode({"ok": True, "elapsed": elapsed}, outputs)
        except KeyError as exc:
            reply = wire.encode({"ok": False, "kind": "input", "error": f"missing input column {exc.args[0]!r}"})
        except (ValueError, TypeError) as exc:
            reply = wire.encode({"ok": False, "kind": "input", "error": f"{type(exc).__name__}: {exc}"})
        except Exception as exc:  # noqa: BLE001 - the model's own failure, reported to the caller
            traceback.print_exc()
            reply = wire.encode({"ok": False, "kind": "model", "error": f"{type(exc).__name__}: {exc}"})
        conn.sendall(b"".join(bytes(chunk) for chunk in reply))


def _invoke(pipeline: Pipeline, header: dict[str, Any], columns: Columns) -> list[Any]:
    from modelport.serving.handlers import HandlerError

    runtime = pipeline.steps[0]
    try:
        start = time.perf_counter_ns()
        body, kind = runtime.invoke(columns["body"].tobytes(), header.get("content_type", ""),  # type: ignore[attr-defined]
                                    header.get("accept", ""))
        elapsed = [time.perf_counter_ns() - start]
        return wire.encode({"ok": True, "elapsed": elapsed, "content_type": kind},
                           {"body": np.frombuffer(body, dtype=np.uint8)})
    except HandlerError as exc:
        return wire.encode({"ok": False, "kind": "input", "error": str(exc)})
    except Exception as exc:  # noqa: BLE001 - the handler's own failure (SageMaker's ModelError)
        traceback.print_exc()
        return wire.encode({"ok": False, "kind": "model", "error": f"{type(exc).__name__}: {exc}"})


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        pipeline = Pipeline(spec, Path(spec["workdir"]))
    except BaseException as exc:  # noqa: BLE001 - any load failure is reported, then the replica exits
        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 3
    np.seterr(all="ignore")
    gc.collect()
    gc.freeze()  # the loaded models never die: keep them out of collections that would stall batches
    serve(pipeline, spec["socket"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
