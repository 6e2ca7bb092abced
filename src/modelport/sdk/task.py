"""Helpers for code running inside a modelport job (an orchestration's task run).

The run supervisor sets MODELPORT_TASK_ID (and WALLAROO_TASK_ID, for code written against Wallaroo) and puts the
run's JSON arguments in the file named by MODELPORT_TASK_ARGS_FILE.
"""

from __future__ import annotations

import json
import os
from typing import Any


def in_task() -> bool:
    """True inside a task run."""
    return "MODELPORT_TASK_ID" in os.environ or "WALLAROO_TASK_ID" in os.environ


def task_args() -> dict[str, Any]:
    """The JSON arguments the task was started with ({} outside a task)."""
    path = os.environ.get("MODELPORT_TASK_ARGS_FILE")
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    raw = os.environ.get("MODELPORT_TASK_ARGS")
    return json.loads(raw) if raw else {}
