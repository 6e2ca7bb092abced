"""modelport: take a trained model to a live, versioned inference service; run ML workloads on schedules.

`modelport.Client`, `modelport.in_task` and `modelport.task_args` are loaded on first use, so that replica and job
processes importing `modelport.serving` or `modelport.jobs` do not pay for the SDK's HTTP client.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Client", "in_task", "task_args"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from modelport.sdk.client import Client

        return Client
    if name in ("in_task", "task_args"):
        from modelport.sdk import task

        return getattr(task, name)
    raise AttributeError(name)
