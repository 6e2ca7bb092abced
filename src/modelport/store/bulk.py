"""Bulk inserts that bypass SQLAlchemy's per-row processing, for tables written thousands of times a second.

They write the storage formats SQLAlchemy itself uses for these columns, so the ORM reads the rows back as
usual.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection

_LOG_COLUMNS = "pipeline_version, deployment_id, time, rows, elapsed_ns, inputs, outputs"

# (pipeline version, deployment id, time in ms since the epoch, rows, elapsed ns, inputs JSON, outputs JSON)
LogRow = tuple[str, int, int, int, int, str, str]


def insert_inference_logs(connection: Connection, rows: list[LogRow]) -> None:
    """One executemany. SQLite stores DATETIME as naive UTC text, PostgreSQL takes timestamps and JSON casts.
    Rows arrive in time order, many per second: the time is formatted once per second, not once per row."""
    if not rows:
        return
    second, base = -1, ""
    params: list[tuple[Any, ...]] = []
    if connection.dialect.name == "sqlite":
        for v, d, t, n, e, i, o in rows:
            if t // 1000 != second:
                second = t // 1000
                base = datetime.fromtimestamp(second, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.")
            params.append((v, d, f"{base}{t % 1000:03d}000", n, e, i, o))
        sql = f"INSERT INTO inference_logs ({_LOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
    else:
        moment = datetime.fromtimestamp(0, tz=timezone.utc)
        for v, d, t, n, e, i, o in rows:
            if t // 1000 != second:
                second = t // 1000
                moment = datetime.fromtimestamp(second, tz=timezone.utc)
            params.append((v, d, moment.replace(microsecond=t % 1000 * 1000), n, e, i, o))
        marks = ", ".join(["%s"] * 5 + ["CAST(%s AS JSON)"] * 2)
        sql = f"INSERT INTO inference_logs ({_LOG_COLUMNS}) VALUES ({marks})"
    connection.exec_driver_sql(sql, params)
