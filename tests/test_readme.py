"""The README's quickstart, pasted as a newcomer would: every shell block of it, top to bottom, against a real server.
It must succeed, leave nothing in the checkout, and leave nothing running but the server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support import Server

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart_blocks() -> list[str]:
    """The ```sh blocks of the Quickstart section, after the first (`make serve`, which the fixture stands for)."""
    text = README.read_text()
    section = text[text.index("## Quickstart\n"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert blocks and "make serve" in blocks[0]
    return blocks[1:]


def test_the_quickstart_pastes_top_to_bottom(server: Server, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"  # stands for the clone: .modelport is the server's home, .venv this interpreter's
    checkout.mkdir()
    (checkout / ".modelport").symlink_to(server.home)
    (checkout / ".venv").symlink_to(Path(sys.prefix))
    before = sorted(p.name for p in checkout.iterdir())
    script = "set -euo pipefail\n" + "\n".join(quickstart_blocks()).replace("http://127.0.0.1:8080", server.url)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPORT_")}
    result = subprocess.run(["bash", "-c", script], cwd=checkout, env={**env, "TMPDIR": str(scratch)},
                            capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "ready" in result.stdout and "out.predictions" in result.stdout
    assert '"probabilities"' in result.stdout and "arguments: {'greeting': 'hi'}" in result.stdout
    assert sorted(p.name for p in checkout.iterdir()) == before  # nothing left in the checkout

    # nothing left running: no deployment serves, the scheduled task is killed
    workspaces = server.post("/v1/api/workspaces/list", {}).json()["workspaces"]
    for name in ("iris-pipeline", "iris-curl"):
        for workspace in workspaces:
            reply = server.post("/v1/api/admin/get_pipeline_external_url",
                                {"workspace_id": workspace["id"], "pipeline_name": name})
            assert reply.status_code >= 400, reply.text
    tasks = [t for w in workspaces for t in server.post("/v1/api/task/list", {"workspace_id": w["id"]}).json()]
    scheduled = [t for t in tasks if t["name"] == "hello-every-2-min"]
    assert scheduled and all(t["status"] in ("pending_kill", "killed") for t in scheduled), scheduled

