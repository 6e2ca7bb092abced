"""Jobs: an orchestration (code package) run by tasks (once, on a cron schedule, or continuously); each execution
is a run with a status and a log."""

from __future__ import annotations

import enum
import time
from datetime import datetime, timezone

from cron_descriptor import get_description
from croniter import croniter

from modelport.domain.errors import InvalidInput


class PackageStatus(str, enum.Enum):
    PENDING = "pending_packaging"
    PACKAGING = "packaging"
    READY = "ready"
    ERROR = "error"


class TaskKind(str, enum.Enum):
    ONCE = "once"
    SCHEDULED = "scheduled"
    CONTINUOUS = "continuous"


class TaskStatus(str, enum.Enum):
    PENDING = "pending"
    STARTED = "started"
    SUCCESS = "success"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    PENDING_KILL = "pending_kill"
    KILLED = "killed"


class RunStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    TIMED_OUT = "timed_out"
    KILLED = "killed"

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.PENDING, RunStatus.RUNNING)


# `task/list_task_runs` filters by running | failure | success; a timeout or a kill is a kind of failure.
RUN_FILTERS = {
    "running": (RunStatus.PENDING, RunStatus.RUNNING),
    "failure": (RunStatus.FAILURE, RunStatus.TIMED_OUT, RunStatus.KILLED),
    "success": (RunStatus.SUCCESS,),
}


class Overlap(str, enum.Enum):
    """What a scheduled tick does while the previous run still runs (Kubernetes CronJob's concurrencyPolicy)."""

    ALLOW = "allow"
    FORBID = "forbid"


def parse_schedule(expression: object, *, allow_seconds: bool = False) -> str:
    """A 5-field cron expression, in UTC. With `allow_seconds` (a test setting, so tests stay short) croniter's
    6-field form is accepted too, its sixth field being seconds."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidInput("schedule is required: a 5-field cron expression such as '*/5 * * * *'", field="schedule")
    if len(expression) > 255:
        raise InvalidInput("schedule is longer than 255 characters", field="schedule")
    fields = expression.split()
    if len(fields) != 5 and not (allow_seconds and len(fields) == 6):
        raise InvalidInput(f"schedule {expression!r} must have 5 fields (minute hour day-of-month month day-of-week)",
                           field="schedule")
    if not croniter.is_valid(" ".join(fields)):
        raise InvalidInput(f"schedule {expression!r} is not a valid cron expression", field="schedule")
    return " ".join(fields)


def next_fire(schedule: str, after: datetime) -> datetime:
    return croniter(schedule, after.astimezone(timezone.utc)).get_next(datetime)


def describe_schedule(schedule: str) -> str:
    """In words, e.g. 'Every 2 minutes' (for people and for Craft AI's human_readable_schedule)."""
    try:
        return get_description(schedule)
    except Exception:  # noqa: BLE001 - a description is a nicety, never a reason to fail
        return schedule


def log_line(stream: str, text: str, ns: int | None = None) -> str:
    """The Kubernetes/CRI log format Wallaroo returns: `<RFC 3339 with nanoseconds> stdout|stderr F <text>`."""
    ns = time.time_ns() if ns is None else ns
    seconds, fraction = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z {stream} F {text}"
