"""Which server owns which processes, kept in the database (design.md, "Desired state and reconciliation").

Each start of `modelport serve` is a row in `servers`, heartbeated while it runs and removed on a clean stop; every
process it starts is a row in `server_processes` while it lives (backends/local.py writes them). A server that dies
(`kill -9`, a crash, the machine's OOM killer) leaves its rows behind, and its processes die with it through their
guards (backends/guard.py). The ledger is the second net: a server that starts with the same identity (host and
home) finds the rows of its earlier incarnations, ends whatever of their processes still runs, and reports which
runs were lost, BEFORE it starts anything of its own. A row whose server still runs (another server on the same
home) is left alone.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, select, update

from modelport.backends.local import process_start_time, signal_group
from modelport.store.database import Database
from modelport.store.tables import ServerProcess, ServerRecord, utcnow

log = logging.getLogger(__name__)


def boot_id() -> str:
    """Changes on every boot: processes recorded under another boot are all gone, whatever their pids now are."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Leftover:
    """A process an earlier incarnation recorded: what it was, and whether it still ran (and was ended)."""

    kind: str
    subject: str
    pid: int
    ended: bool


@dataclass
class Recovery:
    """What `ServerLedger.register` found of earlier incarnations."""

    servers: list[str] = field(default_factory=list)  # their ids (task runs record the id of the server running them)
    processes: list[Leftover] = field(default_factory=list)


class ServerLedger:
    def __init__(self, db: Database, *, home: Path, url: str = "", heartbeat_s: float = 2.0) -> None:
        self.db = db
        self.id = str(uuid.uuid4())
        self.host = socket.gethostname()
        self.home = str(home)
        self.name = f"{self.host}:{self.home}"
        self.url = url
        self.heartbeat_s = heartbeat_s
        self._boot = boot_id()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- this incarnation -------------------------------------------------------------------------------------------
    def register(self) -> Recovery:
        """End what earlier incarnations of this server left, then record this one and start its heartbeat."""
        recovery = self.reap()
        pid = os.getpid()
        with self.db.session() as s:
            s.add(ServerRecord(id=self.id, name=self.name, home=self.home, host=self.host, pid=pid,
                               pid_start=process_start_time(pid), boot_id=self._boot, url=self.url,
                               started_at=utcnow(), heartbeat_at=utcnow()))
        self._thread = threading.Thread(target=self._beat, name="server-heartbeat", daemon=True)
        self._thread.start()
        return recovery

    def deregister(self) -> None:
        """A clean stop: this server's processes have ended; its rows go."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            with self.db.session() as s:
                s.execute(delete(ServerProcess).where(ServerProcess.server_id == self.id))
                s.execute(delete(ServerRecord).where(ServerRecord.id == self.id))
        except Exception:  # noqa: BLE001 - the database is gone: the next start clears the rows instead
            log.warning("could not remove this server's rows", exc_info=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                with self.db.session() as s:
                    s.execute(update(ServerRecord).where(ServerRecord.id == self.id).values(heartbeat_at=utcnow()))
            except Exception:  # noqa: BLE001 - a database hiccup: the next beat tries again
                log.warning("heartbeat failed", exc_info=True)

    # -- its processes (backends/local.py calls these) --------------------------------------------------------------
    def record(self, kind: str, pid: int, start_time: int | None, subject: str, description: str) -> int:
        with self.db.session() as s:
            row = ServerProcess(server_id=self.id, kind=kind, subject=subject[:512], description=description,
                                pid=pid, pgid=pid, start_time=start_time, started_at=utcnow())
            s.add(row)
            s.flush()
            return row.id

    def forget(self, record_id: int) -> None:
        with self.db.session() as s:
            s.execute(delete(ServerProcess).where(ServerProcess.id == record_id))

    def processes(self) -> list[ServerProcess]:
        with self.db.session() as s:
            return list(s.scalars(select(ServerProcess).where(ServerProcess.server_id == self.id)))

    # -- earlier incarnations ---------------------------------------------------------------------------------------
    def reap(self, wait_s: float = 5.0) -> Recovery:
        recovery = Recovery()
        with self.db.session() as s:
            rows = list(s.scalars(select(ServerRecord).where(ServerRecord.name == self.name)))
            dead = [r for r in rows if not self._alive(r)]
            owned = list(s.scalars(select(ServerProcess).where(ServerProcess.server_id.in_([r.id for r in dead]))))
        boots = {r.id: r.boot_id for r in dead}
        groups = []
        for p in owned:
            ended = False
            if boots[p.server_id] == self._boot and self._boot:
                ended = _end_group(p.pgid, p.start_time)
                if ended:
                    groups.append(p.pgid)
            recovery.processes.append(Leftover(p.kind, p.subject, p.pid, ended))
            if ended:
                log.warning("ended %s %s (pid %s), left by an earlier run of this server", p.kind, p.subject, p.pid)
        deadline = time.monotonic() + wait_s
        while groups and time.monotonic() < deadline:  # SIGKILL is not instant: the memory is back once they are gone
            groups = [g for g in groups if _group_members(g)]
            if groups:
                time.sleep(0.05)
        recovery.servers = [r.id for r in dead]
        if dead:
            with self.db.session() as s:
                s.execute(delete(ServerProcess).where(ServerProcess.server_id.in_(recovery.servers)))
                s.execute(delete(ServerRecord).where(ServerRecord.id.in_(recovery.servers)))
        return recovery

    def _alive(self, row: ServerRecord) -> bool:
        """Whether that incarnation still runs (only this host's can be checked, and only they share our name)."""
        if row.id == self.id:
            return True
        if not self._boot:  # no /proc to ask (not Linux): trust a fresh heartbeat
            return (utcnow() - row.heartbeat_at).total_seconds() < 3 * self.heartbeat_s
        if row.boot_id != self._boot or row.host != self.host:
            return False
        return row.pid_start is not None and process_start_time(row.pid) == row.pid_start


def _group_members(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (a scan of /proc: the leader may be gone, its descendants not)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _end_group(pgid: int, start_time: int | None) -> bool:
    """SIGKILL the group a recorded process led, unless its number now belongs to someone else: the leader (pid ==
    pgid) still runs with another start time. With the leader gone, the kernel keeps the group's number reserved
    while any member lives, so the members are the recorded leader's descendants."""
    leader_start = process_start_time(pgid)
    if leader_start is not None and leader_start != start_time:
        return False
    if leader_start is None and not _group_members(pgid):
        return False
    signal_group(pgid, signal.SIGKILL)
    return True
