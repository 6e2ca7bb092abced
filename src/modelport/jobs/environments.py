"""Python environments for user code (python models, orchestrations): one virtualenv per requirements hash, built
with uv and cached. The environment sees modelport's own packages through a .pth file placed after its own
site-packages, so requirements can add or override packages without reinstalling numpy, pandas or modelport."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

from modelport.backends.local import run_blocking
from modelport.domain.errors import InvalidInput

log = logging.getLogger(__name__)


class EnvironmentBuildFailed(Exception):
    pass


def normalise(requirements: list[str] | str) -> list[str]:
    lines = requirements.splitlines() if isinstance(requirements, str) else list(requirements)
    cleaned = []
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-") and not line.startswith(("--index-url", "--extra-index-url")):
            raise InvalidInput(f"requirements line {line!r} is not allowed (options other than index URLs)",
                               field="requirements")
        cleaned.append(line)
    return sorted(set(cleaned))


def requirements_key(requirements: list[str]) -> str:
    return hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:32]


def _uv() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except Exception:  # noqa: BLE001 - fall back to PATH
        found = shutil.which("uv")
        if not found:
            raise EnvironmentBuildFailed("uv is not installed") from None
        return found


class EnvironmentBuilder:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def python_for(self, requirements: list[str] | str) -> str:
        """The interpreter to run user code with: the server's own when there is nothing to install."""
        wanted = normalise(requirements)
        if not wanted:
            return sys.executable
        key = requirements_key(wanted)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # two builds of the same requirements never race; the second reuses the first
            env = self.root / key
            python = env / "bin" / "python"
            if (env / ".ready").exists():
                return str(python)
            self._build(env, wanted)
            return str(python)

    def _build(self, env: Path, requirements: list[str]) -> None:
        shutil.rmtree(env, ignore_errors=True)
        staging = env.with_name(env.name + ".building")
        shutil.rmtree(staging, ignore_errors=True)
        uv = _uv()
        log.info("building environment %s for %s", env.name, requirements)
        run_env = {**os.environ, "VIRTUAL_ENV": str(staging)}
        steps = [
            [uv, "venv", "--quiet", "--python", sys.executable, str(staging)],
            [uv, "pip", "install", "--quiet", "--python", str(staging / "bin" / "python"), *requirements],
        ]
        for command in steps:
            try:
                result = run_blocking("environment", env.name, command, python=False, env=run_env, timeout_s=1800)
            except subprocess.TimeoutExpired:
                shutil.rmtree(staging, ignore_errors=True)
                raise EnvironmentBuildFailed(f"{command[1]} {command[2]} did not finish within 1800 s") from None
            if result.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                raise EnvironmentBuildFailed((result.stderr or result.stdout).strip()[-2000:])
        site = next((staging / "lib").glob("python*/site-packages"))
        base = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
        # addsitedir (not a bare path) so the base's own .pth files (an editable modelport, for one) work too;
        # it appends, so the environment's own packages still win.
        lines = [f"import site; site.addsitedir({path!r})" for path in dict.fromkeys(base)]
        (site / "zz_modelport_base.pth").write_text("\n".join(lines) + "\n")
        # uv venvs are relocatable enough for our use: their scripts call bin/python, which we keep in place
        staging.rename(env)
        (env / ".ready").write_text("\n".join(requirements) + "\n")
