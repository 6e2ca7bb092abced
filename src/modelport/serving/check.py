"""`python -m modelport.serving.check FRAMEWORK PATH`: load a model for real, print one JSON line, exit 0 or 1.

Run by the registry in a separate process, so a model that crashes or hangs while loading cannot harm the server.
"""

from __future__ import annotations

import json
import sys
import tempfile
import traceback
from pathlib import Path


def main(argv: list[str]) -> int:
    framework, path, entry = argv[0], Path(argv[1]), argv[2] if len(argv) > 2 else ""
    try:
        from modelport.serving.runtimes import load_runtime

        with tempfile.TemporaryDirectory(prefix="modelport-check-") as workdir:
            runtime = load_runtime(framework, path, Path(workdir), entry=entry)
            signature = runtime.signature()
    except BaseException as exc:  # noqa: BLE001 - anything the model does while loading is its error, reported
        reason = f"could not load the {framework} model: {type(exc).__name__}: {exc}".strip()
        print(json.dumps({"ok": False, "reason": reason[:2000], "trace": traceback.format_exc()[-4000:]}))
        return 1
    print(json.dumps({"ok": True, "signature": signature}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
