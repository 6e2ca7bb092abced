"""`python -m modelport.jobs.function_runner CODE_DIR FUNCTION_PATH FUNCTION_NAME`: calls one function per request.

The first reply line says whether the function loaded ({"ready": true} or {"ready": false, "error"}). Requests
arrive as JSON lines on stdin ({"execution_id", "inputs", "files": {input: path}}); each reply is one JSON
line on the original stdout: {"ok", "outputs" | "error" + "traceback", "logs": [[ns, stream, line], ...]}.
What the function prints is captured per call (that is its execution log); file descriptor 1 is pointed at stderr
so that nothing else can corrupt the replies. An elastic execution sends one request and closes stdin; a
low-latency deployment keeps the process, and its imported function, warm for the next request.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any


class _Capture(io.TextIOBase):
    def __init__(self, stream: str, lines: list[list[Any]]) -> None:
        self.stream = stream
        self.lines = lines
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            self.lines.append([time.time_ns(), self.stream, line])
        return len(text)

    def flush_pending(self) -> None:
        if self.pending:
            self.lines.append([time.time_ns(), self.stream, self.pending])
            self.pending = ""


def _load(code_dir: Path, function_path: str, function_name: str) -> Any:
    sys.path.insert(0, str(code_dir))
    path = code_dir / function_path
    spec = importlib.util.spec_from_file_location(Path(function_path).stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {function_path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise AttributeError(f"{function_path} defines no function {function_name!r}")
    return function


def _plain(value: Any) -> Any:
    """JSON for the reply; bytes (a file output) as {"base64": ...}, a {"path": ...} file output read in."""
    if isinstance(value, (bytes, bytearray)):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _call(function: Any, request: dict[str, Any]) -> dict[str, Any]:
    lines: list[list[Any]] = []
    out, err = _Capture("stdout", lines), _Capture("stderr", lines)
    os.environ["CRAFT_AI_EXECUTION_ID"] = request.get("execution_id", "")
    inputs = dict(request.get("inputs") or {})
    for name, path in (request.get("files") or {}).items():
        inputs[name] = {"path": path}
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = function(**inputs)
        out.flush_pending()
        err.flush_pending()
        if result is None:
            result = {}
        if not isinstance(result, dict):
            raise TypeError(f"the function returned {type(result).__name__}; it must return a dict of outputs")
        outputs = {}
        for name, value in result.items():
            if isinstance(value, dict) and set(value) == {"path"} and isinstance(value["path"], str):
                value = Path(value["path"]).read_bytes()
            outputs[str(name)] = value
        return {"ok": True, "outputs": json.loads(json.dumps(outputs, default=_plain)), "logs": lines}
    except BaseException as exc:  # noqa: BLE001 - the function's failure is the execution's result
        out.flush_pending()
        err.flush_pending()
        trace = traceback.format_exc()
        for line in trace.rstrip("\n").split("\n"):
            lines.append([time.time_ns(), "stderr", line])
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": trace, "logs": lines}


def main(argv: list[str]) -> int:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray writes to fd 1 (C extensions, subprocesses) go to the process log, not the replies
    sys.stdout = sys.stderr
    try:
        function = _load(Path(argv[0]), argv[1], argv[2])
    except BaseException as exc:  # noqa: BLE001 - reported to every request, then exit
        replies.write(json.dumps({"ready": False, "error": f"could not load the function: {type(exc).__name__}: "
                                  f"{exc}", "traceback": traceback.format_exc()}) + "\n")
        return 3
    replies.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        if line.strip():
            replies.write(json.dumps(_call(function, json.loads(line))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
