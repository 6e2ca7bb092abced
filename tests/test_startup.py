"""What the API process loads at start: libraries a first request would otherwise import on the event loop."""

from __future__ import annotations

import subprocess
import sys

# Each takes from 0.2 s to over a second to import on this kind of machine: imported inside a handler, the first
# request that needs it stalls every other request on the event loop for that long.
LOADED_AT_START = ("pyarrow", "pyarrow.ipc", "croniter", "cron_descriptor", "jinja2", "orjson", "numpy")


def test_libraries_a_first_request_needs_are_loaded_with_the_api() -> None:
    code = ("import sys, modelport.api.app; "
            f"print(' '.join(m for m in {LOADED_AT_START!r} if m not in sys.modules))")
    missing = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert missing == [], f"imported lazily, on the event loop at first use: {missing}"
