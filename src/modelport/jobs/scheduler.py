"""The cron scheduler: fires scheduled tasks on time (within a second), once per tick even with several servers on
one database (the run row for a tick is unique, so only one insert wins)."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from starlette.concurrency import run_in_threadpool

from modelport.jobs.supervisor import RunSupervisor
from modelport.services.jobs import JobService

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, jobs: JobService, supervisor: RunSupervisor, *, max_sleep_s: float = 1.0) -> None:
        self.jobs = jobs
        self.supervisor = supervisor
        self.max_sleep_s = max_sleep_s
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def wake(self) -> None:
        """A schedule changed: look again now instead of at the end of the current sleep."""
        self._wakeup.set()

    async def _run_forever(self) -> None:
        while True:
            try:
                await self._fire_due()
                sleep = await self._until_next()
            except Exception:
                log.exception("the scheduler failed a round")
                sleep = self.max_sleep_s
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), sleep)
            except asyncio.TimeoutError:
                pass

    async def _fire_due(self) -> None:
        now = datetime.now(timezone.utc)
        for task_id, tick in await run_in_threadpool(self.jobs.due_scheduled, now):
            run = await run_in_threadpool(self.jobs.claim_tick, task_id, tick, now)
            if run is not None:
                log.info("task %s fires for %s", task_id, tick.isoformat())
                self.supervisor.launch(run.id, task_id)

    async def _until_next(self) -> float:
        upcoming = await run_in_threadpool(self.jobs.next_due)
        if upcoming is None:
            return self.max_sleep_s
        delay = (upcoming - datetime.now(timezone.utc)).total_seconds()
        return min(max(delay, 0.005), self.max_sleep_s)
